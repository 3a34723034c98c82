//! Plain text out of uploaded documents: text, Markdown and PDF.
//!
//! Markdown keeps its words and its structure (headings and paragraphs stay on their own
//! lines, so the chunker can split there) and loses its markup (emphasis, link targets,
//! code fences, table pipes). PDF text comes from `pdf-extract`; a PDF that it cannot
//! read, or that holds no text (a scan), is an error that says so.

use std::panic::AssertUnwindSafe;

/// The kinds of document that can be ingested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentFormat {
    Text,
    Markdown,
    Pdf,
}

impl DocumentFormat {
    /// The canonical content type.
    pub fn content_type(self) -> &'static str {
        match self {
            DocumentFormat::Text => "text/plain",
            DocumentFormat::Markdown => "text/markdown",
            DocumentFormat::Pdf => "application/pdf",
        }
    }

    /// From a content type (parameters such as `; charset=utf-8` are ignored), or, when
    /// that is empty or generic (`application/octet-stream`), from the filename's
    /// extension.
    pub fn detect(content_type: &str, filename: &str) -> Result<DocumentFormat, ExtractError> {
        let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match essence.as_str() {
            "text/plain" => return Ok(DocumentFormat::Text),
            "text/markdown" | "text/x-markdown" => return Ok(DocumentFormat::Markdown),
            "application/pdf" => return Ok(DocumentFormat::Pdf),
            "" | "application/octet-stream" => {}
            other => return Err(ExtractError::Unsupported(format!("content type {other:?}"))),
        }
        let ext = filename.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
        match ext.as_str() {
            "txt" | "text" => Ok(DocumentFormat::Text),
            "md" | "markdown" => Ok(DocumentFormat::Markdown),
            "pdf" => Ok(DocumentFormat::Pdf),
            _ => Err(ExtractError::Unsupported(format!("file {filename:?}"))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("unsupported document: {0}; send text/plain, text/markdown or application/pdf (.txt, .md, .pdf)")]
    Unsupported(String),
    #[error("the document is not UTF-8 text (invalid byte at offset {0}): convert it to UTF-8")]
    NotUtf8(usize),
    #[error("cannot read the PDF: {0}")]
    Pdf(String),
    #[error("the document holds no text (an empty file, or a scanned PDF without a text layer)")]
    Empty,
}

/// The document's text.
pub fn extract_text(bytes: &[u8], format: DocumentFormat) -> Result<String, ExtractError> {
    let text = match format {
        DocumentFormat::Text => utf8(bytes)?.replace("\r\n", "\n"),
        DocumentFormat::Markdown => strip_markdown(&utf8(bytes)?.replace("\r\n", "\n")),
        DocumentFormat::Pdf => pdf_text(bytes)?,
    };
    if text.trim().is_empty() {
        return Err(ExtractError::Empty);
    }
    Ok(text)
}

fn utf8(bytes: &[u8]) -> Result<String, ExtractError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    String::from_utf8(bytes.to_vec()).map_err(|e| ExtractError::NotUtf8(e.utf8_error().valid_up_to()))
}

fn pdf_text(bytes: &[u8]) -> Result<String, ExtractError> {
    if !bytes.starts_with(b"%PDF-") {
        return Err(ExtractError::Pdf("not a PDF file (it does not start with %PDF-)".into()));
    }
    // pdf-extract panics on some malformed files; a bad upload must not take the node down
    match std::panic::catch_unwind(AssertUnwindSafe(|| pdf_text_of(bytes))) {
        Ok(result) => result,
        Err(_) => Err(ExtractError::Pdf("the file is malformed".into())),
    }
}

/// `pdf_extract::extract_text_from_mem`, with the page tree checked first.
fn pdf_text_of(bytes: &[u8]) -> Result<String, ExtractError> {
    let pdf_error = |e: pdf_extract::Error| ExtractError::Pdf(e.to_string());
    let mut doc = pdf_extract::Document::load_mem(bytes).map_err(pdf_error)?;
    if doc.is_encrypted() {
        // as pdf-extract does: an empty user password opens most "encrypted" PDFs
        doc.decrypt("").map_err(pdf_error)?;
    }
    check_page_parents(&doc)?;
    let mut text = String::new();
    pdf_extract::output_doc(&doc, &mut pdf_extract::PlainTextOutput::new(&mut text))
        .map_err(|e| ExtractError::Pdf(e.to_string()))?;
    Ok(text)
}

/// pdf-extract follows each page's `/Parent` chain (for inherited resources and media
/// boxes) without a visited set: a chain that loops would spin forever (found by the
/// `extract` fuzz target).
fn check_page_parents(doc: &pdf_extract::Document) -> Result<(), ExtractError> {
    for (number, id) in doc.get_pages() {
        let mut seen = std::collections::HashSet::from([id]);
        let mut dict = doc.get_dictionary(id).ok();
        while let Some(parent) = dict.and_then(|d| d.get(b"Parent").ok()).and_then(|p| p.as_reference().ok()) {
            if !seen.insert(parent) {
                return Err(ExtractError::Pdf(format!(
                    "the page tree loops (page {number} is its own ancestor): the file is malformed"
                )));
            }
            dict = doc.get_dictionary(parent).ok();
        }
    }
    Ok(())
}

/// Markdown to text: headings, list items and paragraphs on their own lines; no markup.
pub fn strip_markdown(md: &str) -> String {
    let mut out = String::with_capacity(md.len());
    let mut in_fence = false;
    for line in md.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        // table separator rows and horizontal rules carry no words
        if !trimmed.is_empty() && trimmed.chars().all(|c| matches!(c, '-' | '|' | ':' | ' ' | '*' | '_' | '=')) {
            out.push('\n');
            continue;
        }
        let mut l = trimmed.trim_start_matches('#').trim_start();
        if l.len() != trimmed.len() && l.is_empty() {
            continue;
        }
        l = l.trim_start_matches('>').trim_start();
        for marker in ["- [ ] ", "- [x] ", "- ", "* ", "+ "] {
            if let Some(rest) = l.strip_prefix(marker) {
                l = rest;
                break;
            }
        }
        out.push_str(&inline(l));
        out.push('\n');
    }
    out
}

/// Drops emphasis, inline code ticks, images and link targets, keeping link text.
fn inline(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' | '`' => {}
            '_' if i == 0
                || i + 1 == chars.len()
                || !chars[i - 1].is_alphanumeric()
                || !chars[i + 1].is_alphanumeric() => {}
            '!' if chars.get(i + 1) == Some(&'[') => {}
            '[' => {}
            ']' if chars.get(i + 1) == Some(&'(') => {
                // skip the link target
                if let Some(close) = chars[i..].iter().position(|&c| c == ')') {
                    i += close;
                }
            }
            ']' => {}
            '|' => out.push(' '),
            _ => out.push(c),
        }
        i += 1;
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A one-page PDF whose page shows `text` (ASCII, no parentheses) in Helvetica, with a
/// correct xref table: a fixture for tests and examples.
#[doc(hidden)]
pub fn minimal_pdf(text: &str) -> Vec<u8> {
    let content = format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_string(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for o in offsets {
        pdf.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes(),
    );
    pdf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_detected_from_type_then_extension() {
        assert_eq!(DocumentFormat::detect("text/markdown; charset=utf-8", "x").unwrap(), DocumentFormat::Markdown);
        assert_eq!(DocumentFormat::detect("", "Guide.PDF").unwrap(), DocumentFormat::Pdf);
        assert_eq!(DocumentFormat::detect("application/octet-stream", "a.txt").unwrap(), DocumentFormat::Text);
        let e = DocumentFormat::detect("image/png", "a.png").unwrap_err();
        assert!(e.to_string().contains("text/plain, text/markdown or application/pdf"), "{e}");
        assert!(DocumentFormat::detect("", "noext").is_err());
    }

    #[test]
    fn pdf_text_is_extracted() {
        let text = extract_text(&minimal_pdf("Refunds are processed within five business days."), DocumentFormat::Pdf)
            .unwrap();
        assert!(text.contains("Refunds are processed within five business days"), "{text:?}");
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(matches!(extract_text(b"hello \xff world", DocumentFormat::Text), Err(ExtractError::NotUtf8(6))));
        assert_eq!(extract_text(b"  \n\t", DocumentFormat::Text), Err(ExtractError::Empty));
        assert!(matches!(extract_text(b"not a pdf", DocumentFormat::Pdf), Err(ExtractError::Pdf(_))));
        let pdf = minimal_pdf("some words here");
        for cut in [10, pdf.len() / 3, pdf.len() / 2, pdf.len() - 20] {
            assert!(extract_text(&pdf[..cut], DocumentFormat::Pdf).is_err(), "cut at {cut}");
        }
        let mut flipped = pdf.clone();
        for i in (20..flipped.len()).step_by(7) {
            flipped[i] ^= 0x5a;
        }
        let _ = extract_text(&flipped, DocumentFormat::Pdf); // any result but a panic
    }

    #[test]
    fn a_page_that_is_its_own_parent_is_an_error_not_a_hang() {
        // The extract fuzz target's timeout: a page without /Resources that names itself as
        // /Parent, and pdf-extract looped looking for inherited resources. The edits keep
        // every length, so the xref offsets stay right.
        let text = String::from_utf8(minimal_pdf("Refunds are processed within five business days.")).unwrap();
        let looped = text
            .replace("/Type /Page /Parent 2 0 R", "/Type /Page /Parent 3 0 R")
            .replace("/Resources <<", "/Xesources <<");
        assert_eq!(looped.len(), text.len());
        let err = extract_text(looped.as_bytes(), DocumentFormat::Pdf).unwrap_err();
        assert!(err.to_string().contains("page tree loops"), "{err}");
    }

    #[test]
    fn markdown_keeps_words_and_structure() {
        let md = "# Refund policy\n\nCustomers get **full** refunds within [30 days](https://x.y/refunds).\n\n\
                  - item one\n- item _two_\n\n| a | b |\n|---|---|\n| c | d |\n\n```\ncode line\n```\n";
        let text = extract_text(md.as_bytes(), DocumentFormat::Markdown).unwrap();
        assert!(text.starts_with("Refund policy\n"), "{text:?}");
        assert!(text.contains("Customers get full refunds within 30 days."), "{text:?}");
        assert!(text.contains("item one\nitem two"), "{text:?}");
        assert!(text.contains("a b") && text.contains("code line"), "{text:?}");
        assert!(!text.contains("https://") && !text.contains("**") && !text.contains("---"), "{text:?}");
        assert_eq!(strip_markdown("snake_case_name"), "snake_case_name\n");
    }
}
