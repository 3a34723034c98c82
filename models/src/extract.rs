//! Plain text out of uploaded documents: text, Markdown and PDF.
//!
//! Markdown keeps its words and its structure (headings and paragraphs stay on their own
//! lines, so the chunker can split there) and loses its markup (emphasis, link targets,
//! code fences, table pipes). PDF text comes from `pdf-extract`; a PDF that it cannot
//! read, or that holds no text (a scan), is an error that says so.
//!
//! Uploads are untrusted, so every step is bounded: the Markdown pass is linear in the
//! input, and a PDF is refused (with its reason) before `pdf-extract` sees it when its
//! streams would inflate past [`ExtractLimits::pdf_max_decompressed_bytes`], when its
//! form XObjects call each other in a cycle or expand past that bound, or when it is
//! encrypted; reading its text stops at [`ExtractLimits::pdf_max_time`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

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
    #[error(
        "the PDF inflates past {limit} bytes (a compression bomb, or a very large document): split it, or raise \
         the limit if it is genuine"
    )]
    PdfTooLarge { limit: usize },
    #[error("reading the PDF's text took longer than {ms} ms: split the document, or raise the limit")]
    PdfTimeout { ms: u64 },
    #[error("the PDF is encrypted: upload a copy without a password")]
    PdfEncrypted,
}

/// Bounds on the work one document may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Bytes that a PDF's streams may inflate to, all together (also the bound on the
    /// content its form XObjects expand to, and on its extracted text).
    pub pdf_max_decompressed_bytes: usize,
    /// How long reading a PDF's text may take.
    pub pdf_max_time: Duration,
}

impl Default for ExtractLimits {
    /// 64 MiB and 30 s.
    fn default() -> Self {
        ExtractLimits { pdf_max_decompressed_bytes: 64 * 1024 * 1024, pdf_max_time: Duration::from_secs(30) }
    }
}

/// The document's text, within the default [`ExtractLimits`].
pub fn extract_text(bytes: &[u8], format: DocumentFormat) -> Result<String, ExtractError> {
    extract_text_within(bytes, format, &ExtractLimits::default())
}

/// The document's text, or an error when it is not readable or exceeds `limits`.
pub fn extract_text_within(
    bytes: &[u8],
    format: DocumentFormat,
    limits: &ExtractLimits,
) -> Result<String, ExtractError> {
    let text = match format {
        DocumentFormat::Text => utf8(bytes)?.replace("\r\n", "\n"),
        DocumentFormat::Markdown => strip_markdown(&utf8(bytes)?.replace("\r\n", "\n")),
        DocumentFormat::Pdf => pdf_text(bytes, limits)?,
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

fn pdf_text(bytes: &[u8], limits: &ExtractLimits) -> Result<String, ExtractError> {
    if !bytes.starts_with(b"%PDF-") {
        return Err(ExtractError::Pdf("not a PDF file (it does not start with %PDF-)".into()));
    }
    let started = Instant::now();
    let limit = limits.pdf_max_decompressed_bytes;
    // before lopdf parses anything: it inflates cross-reference and object streams as it loads
    check_inflation(bytes, limit)?;
    // pdf-extract panics on some malformed files; a bad upload must not take the node down
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let doc = pdf_extract::Document::load_mem(bytes).map_err(|e| ExtractError::Pdf(e.to_string()))?;
        if doc.is_encrypted() {
            return Err(ExtractError::PdfEncrypted);
        }
        check_forms(&doc, limit.saturating_mul(FORM_WORK_FACTOR))?;
        check_page_parents(&doc)?;
        let mut text = String::new();
        let (result, stopped) = {
            let mut out = BoundedOutput {
                inner: pdf_extract::PlainTextOutput::new(&mut text),
                deadline: started + limits.pdf_max_time,
                max_time: limits.pdf_max_time,
                written: 0,
                limit,
                stopped: None,
            };
            let result = pdf_extract::output_doc(&doc, &mut out);
            (result, out.stopped)
        };
        match (result, stopped) {
            (_, Some(why)) => Err(why),
            (Ok(()), None) => Ok(text),
            (Err(e), None) => Err(ExtractError::Pdf(e.to_string())),
        }
    }));
    result.unwrap_or_else(|_| Err(ExtractError::Pdf("the file is malformed".into())))
}

/// Filters applied on top of each other at most before a PDF is refused.
const MAX_LAYERS: usize = 8;
/// Form XObjects nested deeper than this are refused (pdf-extract recurses into each).
const MAX_FORM_DEPTH: usize = 64;
/// The content a PDF's pages and forms may expand to, counting every repeat, as a
/// multiple of the inflation bound (a letterhead form on every page is repeated work).
const FORM_WORK_FACTOR: usize = 4;

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Refuses a PDF whose streams would inflate past `limit` bytes in all, before any
/// parser inflates them. The data after every `stream` keyword is tried as zlib, LZW
/// and ASCII85 (the filters lopdf decodes) whatever its dictionary declares (names can
/// be #-escaped, and dictionaries are not parsed here), and each output again, so
/// chained filters count too. Every attempt stops when the budget is spent, and the
/// input all attempts read is bounded as well, so the scan itself is linear.
fn check_inflation(pdf: &[u8], limit: usize) -> Result<(), ExtractError> {
    let read = pdf.len().saturating_add(limit).saturating_mul(2).saturating_add(1 << 16);
    let mut budget = InflateBudget { limit, out_left: limit, in_left: read };
    let mut from = 0;
    while let Some(p) = find(&pdf[from..], b"stream") {
        let keyword = from + p;
        from = keyword + b"stream".len();
        if pdf[..keyword].ends_with(b"end") {
            continue;
        }
        let data = match &pdf[from..] {
            [b'\r', b'\n', rest @ ..] => rest,
            [b'\n' | b'\r', rest @ ..] => rest,
            _ => continue,
        };
        budget.layers(data, 0)?;
    }
    Ok(())
}

struct InflateBudget {
    limit: usize,
    /// Output bytes the decoders may still produce.
    out_left: usize,
    /// Input bytes the decoders may still read.
    in_left: usize,
}

impl InflateBudget {
    fn produced(&mut self, n: usize) -> Result<(), ExtractError> {
        self.out_left = self.out_left.checked_sub(n).ok_or(ExtractError::PdfTooLarge { limit: self.limit })?;
        Ok(())
    }

    fn read(&mut self, n: usize) -> Result<(), ExtractError> {
        self.in_left = self
            .in_left
            .checked_sub(n)
            .ok_or_else(|| ExtractError::Pdf("the file is malformed (its streams overlap)".into()))?;
        Ok(())
    }

    fn layers(&mut self, data: &[u8], depth: usize) -> Result<(), ExtractError> {
        let decoded = [self.zlib(data)?, self.lzw(data, true)?, self.lzw(data, false)?];
        let text = self.ascii85(data)?;
        if depth == MAX_LAYERS {
            if decoded.iter().any(|d| !d.is_empty()) {
                return Err(ExtractError::Pdf(format!("its streams are compressed more than {MAX_LAYERS} times over")));
            }
            return Ok(());
        }
        for out in decoded.iter().chain([&text]).filter(|d| !d.is_empty()) {
            self.layers(out, depth + 1)?;
        }
        Ok(())
    }

    /// What a FlateDecode filter makes of `data` (lopdf keeps what came out before an error).
    fn zlib(&mut self, data: &[u8]) -> Result<Vec<u8>, ExtractError> {
        use flate2::{Decompress, FlushDecompress, Status};
        // a zlib header: deflate, a window of at most 32 KiB, a check that divides by 31
        let header = match data {
            [cmf, flg, ..] => cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
            _ => false,
        };
        if !header {
            return Ok(Vec::new());
        }
        let mut z = Decompress::new(true);
        let mut out = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let (in_before, out_before) = (z.total_in(), z.total_out());
            let status = z.decompress(&data[in_before as usize..], &mut buf, FlushDecompress::None);
            let n = (z.total_out() - out_before) as usize;
            self.produced(n)?;
            out.extend_from_slice(&buf[..n]);
            match status {
                Ok(Status::StreamEnd) | Err(_) => break,
                Ok(_) if n == 0 && z.total_in() == in_before => break,
                Ok(_) => {}
            }
        }
        self.read(z.total_in() as usize)?;
        Ok(out)
    }

    /// What an LZWDecode filter makes of `data`, with or without EarlyChange.
    fn lzw(&mut self, data: &[u8], early_change: bool) -> Result<Vec<u8>, ExtractError> {
        use weezl::{BitOrder, LzwStatus, decode::Decoder};
        let mut decoder = if early_change {
            Decoder::with_tiff_size_switch(BitOrder::Msb, 8)
        } else {
            Decoder::new(BitOrder::Msb, 8)
        };
        let mut out = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        let mut used = 0;
        loop {
            let r = decoder.decode_bytes(&data[used..], &mut buf);
            used += r.consumed_in;
            self.produced(r.consumed_out)?;
            out.extend_from_slice(&buf[..r.consumed_out]);
            match r.status {
                Ok(LzwStatus::Ok) if r.consumed_in > 0 || r.consumed_out > 0 => {}
                _ => break,
            }
        }
        self.read(used)?;
        Ok(out)
    }

    /// What an ASCII85Decode filter makes of `data`. Only its growth counts (`z` is four
    /// zero bytes): other groups shrink, and the input is part of the file.
    fn ascii85(&mut self, data: &[u8]) -> Result<Vec<u8>, ExtractError> {
        let mut out = Vec::new();
        let (mut group, mut count, mut used) = (0u32, 0, 0);
        for &c in data {
            if c == b'z' && count == 0 {
                out.extend_from_slice(&[0; 4]);
            } else if (b'!'..=b'u').contains(&c) {
                group = group.wrapping_mul(85).wrapping_add(u32::from(c - b'!'));
                count += 1;
                if count == 5 {
                    out.extend_from_slice(&group.to_be_bytes());
                    (group, count) = (0, 0);
                }
            } else if !c.is_ascii_whitespace() {
                break;
            }
            used += 1;
            if out.len().saturating_sub(used) > self.out_left {
                return Err(ExtractError::PdfTooLarge { limit: self.limit });
            }
        }
        self.produced(out.len().saturating_sub(used))?;
        self.read(used)?;
        Ok(out)
    }
}

/// A form XObject runs its content each time a page or another form calls it with
/// `Do`, and pdf-extract follows the calls with no depth limit: a cycle would overflow
/// the stack, and nested repeats multiply the work. Refuses both. The calls are
/// over-approximated: a form without resources of its own may call any XObject of the
/// name it uses.
fn check_forms(doc: &pdf_extract::Document, max_work: usize) -> Result<(), ExtractError> {
    let mut forms = Forms { doc, by_name: HashMap::new(), cost: HashMap::new(), active: BTreeSet::new(), max_work };
    for object in doc.objects.values() {
        let dict = match object {
            pdf_extract::Object::Dictionary(d) => d,
            pdf_extract::Object::Stream(s) => &s.dict,
            _ => continue,
        };
        for (name, id) in forms.xobjects(dict).unwrap_or_default() {
            forms.by_name.entry(name).or_default().insert(id);
        }
    }
    let mut work = 0usize;
    for page in doc.get_pages().into_values() {
        let (Ok(content), Ok(dict)) = (doc.get_page_content(page), doc.get_dictionary(page)) else { continue };
        work = work.saturating_add(forms.content_cost(dict, &content, 0)?);
        if work > max_work {
            return Err(ExtractError::PdfTooLarge { limit: max_work });
        }
    }
    Ok(())
}

type ObjectId = (u32, u16);

struct Forms<'a> {
    doc: &'a pdf_extract::Document,
    /// Every XObject name of every resource dictionary, and the objects it names.
    by_name: HashMap<Vec<u8>, BTreeSet<ObjectId>>,
    /// The work of running an XObject once, forms it calls included.
    cost: HashMap<ObjectId, usize>,
    /// The XObjects being costed: meeting one again is a cycle.
    active: BTreeSet<ObjectId>,
    max_work: usize,
}

impl Forms<'_> {
    /// The XObjects of a dictionary's own resources.
    fn xobjects(&self, dict: &pdf_extract::Dictionary) -> Option<BTreeMap<Vec<u8>, ObjectId>> {
        let deref = |o| self.doc.dereference(o).ok().map(|(_, o)| o);
        let resources = deref(dict.get(b"Resources").ok()?)?.as_dict().ok()?;
        let xobjects = deref(resources.get(b"XObject").ok()?)?.as_dict().ok()?;
        Some(xobjects.iter().filter_map(|(k, v)| Some((k.clone(), v.as_reference().ok()?))).collect())
    }

    /// The work of running `content` (of the page or form with `dict`).
    fn content_cost(
        &mut self,
        dict: &pdf_extract::Dictionary,
        content: &[u8],
        depth: usize,
    ) -> Result<usize, ExtractError> {
        let own = self.xobjects(dict);
        let Ok(ops) = pdf_extract::content::Content::decode(content) else { return Ok(content.len()) };
        let mut work = content.len();
        for op in ops.operations.iter().filter(|op| op.operator == "Do") {
            let Some(name) = op.operands.first().and_then(|o| o.as_name().ok()) else { continue };
            let targets: Vec<ObjectId> = match &own {
                Some(own) => own.get(name).copied().into_iter().collect(),
                None => self.by_name.get(name).map(|s| s.iter().copied().collect()).unwrap_or_default(),
            };
            for target in targets {
                work = work.saturating_add(self.form_cost(target, depth + 1)?);
                if work > self.max_work {
                    return Err(ExtractError::PdfTooLarge { limit: self.max_work });
                }
            }
        }
        Ok(work)
    }

    fn form_cost(&mut self, id: ObjectId, depth: usize) -> Result<usize, ExtractError> {
        if let Some(c) = self.cost.get(&id) {
            return Ok(*c);
        }
        if depth > MAX_FORM_DEPTH || !self.active.insert(id) {
            return Err(ExtractError::Pdf(format!(
                "its form XObjects call each other in a cycle, or nest deeper than {MAX_FORM_DEPTH}"
            )));
        }
        let doc = self.doc;
        let cost = match doc.get_object(id) {
            Ok(pdf_extract::Object::Stream(s)) => {
                let content = s.decompressed_content().unwrap_or_else(|_| s.content.clone());
                self.content_cost(&s.dict, &content, depth)?
            }
            _ => 0,
        };
        self.active.remove(&id);
        self.cost.insert(id, cost);
        Ok(cost)
    }
}

/// pdf-extract's plain-text output, stopped at the deadline or the size bound.
struct BoundedOutput<O> {
    inner: O,
    deadline: Instant,
    max_time: Duration,
    written: usize,
    limit: usize,
    stopped: Option<ExtractError>,
}

impl<O> BoundedOutput<O> {
    fn check(&mut self, bytes: usize) -> Result<(), pdf_extract::OutputError> {
        self.written = self.written.saturating_add(bytes);
        if self.written > self.limit {
            self.stopped = Some(ExtractError::PdfTooLarge { limit: self.limit });
        } else if Instant::now() > self.deadline {
            self.stopped = Some(ExtractError::PdfTimeout { ms: self.max_time.as_millis() as u64 });
        }
        match &self.stopped {
            Some(why) => Err(pdf_extract::OutputError::IoError(std::io::Error::other(why.to_string()))),
            None => Ok(()),
        }
    }
}

impl<O: pdf_extract::OutputDev> pdf_extract::OutputDev for BoundedOutput<O> {
    fn begin_page(
        &mut self,
        page_num: u32,
        media_box: &pdf_extract::MediaBox,
        art_box: Option<(f64, f64, f64, f64)>,
    ) -> Result<(), pdf_extract::OutputError> {
        self.check(1)?;
        self.inner.begin_page(page_num, media_box, art_box)
    }

    fn end_page(&mut self) -> Result<(), pdf_extract::OutputError> {
        self.check(1)?;
        self.inner.end_page()
    }

    fn output_character(
        &mut self,
        trm: &pdf_extract::Transform,
        width: f64,
        spacing: f64,
        font_size: f64,
        char: &str,
    ) -> Result<(), pdf_extract::OutputError> {
        self.check(char.len() + 1)?;
        self.inner.output_character(trm, width, spacing, font_size, char)
    }

    fn begin_word(&mut self) -> Result<(), pdf_extract::OutputError> {
        self.check(1)?;
        self.inner.begin_word()
    }

    fn end_word(&mut self) -> Result<(), pdf_extract::OutputError> {
        self.check(1)?;
        self.inner.end_word()
    }

    fn end_line(&mut self) -> Result<(), pdf_extract::OutputError> {
        self.check(1)?;
        self.inner.end_line()
    }

    fn stroke(
        &mut self,
        ctm: &pdf_extract::Transform,
        colorspace: &pdf_extract::ColorSpace,
        color: &[f64],
        path: &pdf_extract::Path,
    ) -> Result<(), pdf_extract::OutputError> {
        self.check(0)?;
        self.inner.stroke(ctm, colorspace, color, path)
    }

    fn fill(
        &mut self,
        ctm: &pdf_extract::Transform,
        colorspace: &pdf_extract::ColorSpace,
        color: &[f64],
        path: &pdf_extract::Path,
    ) -> Result<(), pdf_extract::OutputError> {
        self.check(0)?;
        self.inner.fill(ctm, colorspace, color, path)
    }
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
    inline_counted(s).0
}

/// [`inline`], and the characters it looked at: linear in the input (each is visited
/// by the main pass and by the one backward pass that finds the next `)`), so a line
/// of a million `](` with no `)` costs two million looks, not 10^12.
fn inline_counted(s: &str) -> (String, usize) {
    let mut out = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    // next_close[i]: the first `)` at or after i
    let mut next_close = vec![usize::MAX; chars.len() + 1];
    for i in (0..chars.len()).rev() {
        next_close[i] = if chars[i] == ')' { i } else { next_close[i + 1] };
    }
    let mut looks = chars.len();
    let mut i = 0;
    while i < chars.len() {
        looks += 1;
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
                if next_close[i] != usize::MAX {
                    i = next_close[i];
                }
            }
            ']' => {}
            '|' => out.push(' '),
            _ => out.push(c),
        }
        i += 1;
    }
    (out.split_whitespace().collect::<Vec<_>>().join(" "), looks)
}

/// A one-page PDF whose page shows `text` (ASCII, no parentheses) in Helvetica, with a
/// correct xref table: a fixture for tests and examples.
#[doc(hidden)]
pub fn minimal_pdf(text: &str) -> Vec<u8> {
    pdf_with_content("", format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET").as_bytes(), &[])
}

/// A one-page PDF whose page content stream is `data` with `dict` in its dictionary
/// (`/Filter /FlateDecode`, say); `xobjects` are the page's XObjects, named `/X0`,
/// `/X1`, ... (objects 6, 7, ...), each a form (dictionary entries, content): a fixture
/// for tests.
#[doc(hidden)]
pub fn pdf_with_content(dict: &str, data: &[u8], xobjects: &[(&str, &[u8])]) -> Vec<u8> {
    let names: String = (0..xobjects.len()).map(|i| format!("/X{i} {} 0 R ", i + 6)).collect();
    let stream = |dict: &str, data: &[u8]| {
        let mut o = format!("<< /Length {} {dict} >>\nstream\n", data.len()).into_bytes();
        o.extend_from_slice(data);
        o.extend_from_slice(b"\nendstream");
        o
    };
    let mut objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
             /Resources << /Font << /F1 5 0 R >> /XObject << {names}>> >> >>"
        )
        .into_bytes(),
        stream(dict, data),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
    ];
    for (dict, data) in xobjects {
        objects.push(stream(&format!("/Type /XObject /Subtype /Form /BBox [0 0 612 792] {dict}"), data));
    }
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        pdf.extend_from_slice(body);
        pdf.extend_from_slice(b"\nendobj\n");
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

/// `data` compressed with zlib, as a FlateDecode stream holds it: a fixture for tests.
#[doc(hidden)]
pub fn deflate(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(data).and_then(|_| z.finish()).expect("deflate into memory")
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

    #[test]
    fn a_line_of_link_openers_is_linear() {
        // 1 MB of `](` and no `)`: each opener used to scan to the end of the line
        let line = "](".repeat(500_000);
        let (text, looks) = inline_counted(&line);
        assert_eq!(text, "(".repeat(500_000));
        assert!(looks <= 2 * line.len() + 1, "{looks} looks for {} characters", line.len());
        // and with a `)` at the very end, the first link target swallows the line
        let closed = format!("{line})");
        let (text, looks) = inline_counted(&closed);
        assert_eq!((text.as_str(), looks <= 2 * closed.len() + 1), ("", true), "{looks}");
        // the whole extraction, under a generous hang guard (not a speed assertion)
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(extract_text(format!("# Title\n{line}\n").as_bytes(), DocumentFormat::Markdown));
        });
        let text = done_rx.recv_timeout(Duration::from_secs(120)).expect("extraction finishes").unwrap();
        assert!(text.starts_with("Title\n(((") && text.len() == "Title\n".len() + 500_001, "{}", text.len());
        // link text is kept and targets dropped as before
        assert_eq!(inline("see [the docs](https://x.y/a) and [b](c)"), "see the docs and b");
    }

    #[test]
    fn compressed_pdfs_within_the_bounds_are_read() {
        let content = b"BT /F1 12 Tf 72 720 Td (Compressed words are read.) Tj ET";
        let pdf = pdf_with_content("/Filter /FlateDecode", &deflate(content), &[]);
        let text = extract_text(&pdf, DocumentFormat::Pdf).unwrap();
        assert!(text.contains("Compressed words are read."), "{text:?}");
        // a form XObject drawn from the page is read too
        let form = b"BT /F1 12 Tf 72 700 Td (From a form.) Tj ET".as_slice();
        let pdf = pdf_with_content("", b"/X0 Do", &[("/Resources << /Font << /F1 5 0 R >> >>", form)]);
        let text = extract_text(&pdf, DocumentFormat::Pdf).unwrap();
        assert!(text.contains("From a form."), "{text:?}");
    }

    #[test]
    fn a_pdf_bomb_is_refused_with_its_reason() {
        // 65 MiB of zeros, deflated twice: a PDF of about a kilobyte
        let bomb = deflate(&deflate(&vec![0u8; 65 * 1024 * 1024]));
        let pdf = pdf_with_content("/Filter [/FlateDecode /FlateDecode]", &bomb, &[]);
        assert!(pdf.len() < 4_096, "{}", pdf.len());
        let e = extract_text(&pdf, DocumentFormat::Pdf).unwrap_err();
        assert_eq!(e, ExtractError::PdfTooLarge { limit: 64 * 1024 * 1024 });
        assert!(e.to_string().contains("inflates past 67108864 bytes"), "{e}");
        // a smaller bound, and filter names lopdf would read through #-escapes
        let limits = ExtractLimits { pdf_max_decompressed_bytes: 1024 * 1024, ..ExtractLimits::default() };
        let two_mib = deflate(&vec![b' '; 2 * 1024 * 1024]);
        for dict in ["/Filter /FlateDecode", "/Filter /Flate#44ecode", ""] {
            let pdf = pdf_with_content(dict, &two_mib, &[]);
            let e = extract_text_within(&pdf, DocumentFormat::Pdf, &limits).unwrap_err();
            assert_eq!(e, ExtractError::PdfTooLarge { limit: 1024 * 1024 }, "{dict}");
        }
        // the same stream in a cross-reference or object stream is inflated by lopdf as it
        // loads: the scan runs before, on every stream, declared or not
        let mut raw = b"%PDF-1.5\n1 0 obj\n<< /Type /ObjStm /N 1 /First 4 /Filter /FlateDecode >>\nstream\n".to_vec();
        raw.extend_from_slice(&two_mib);
        raw.extend_from_slice(b"\nendstream\nendobj\n%%EOF\n");
        let e = extract_text_within(&raw, DocumentFormat::Pdf, &limits).unwrap_err();
        assert_eq!(e, ExtractError::PdfTooLarge { limit: 1024 * 1024 });
    }

    #[test]
    fn forms_that_call_each_other_are_refused() {
        // X0 has no resources of its own, so `/X0 Do` in it runs X0 again, forever: this
        // used to overflow the stack and abort the process
        let pdf = pdf_with_content("", b"/X0 Do", &[("", b"/X0 Do".as_slice())]);
        let e = extract_text(&pdf, DocumentFormat::Pdf).unwrap_err();
        assert!(matches!(&e, ExtractError::Pdf(m) if m.contains("cycle")), "{e}");
        // X0 draws X1 64 times, X1 draws X2 64 times, ...: a few bytes that expand past the bound
        let calls = |n: usize| "/X1 Do ".repeat(n).into_bytes();
        let res = "/Resources << /XObject << /X1 7 0 R >> >>";
        let (c0, c1) = (calls(64), "/X2 Do ".repeat(64).into_bytes());
        let c2 = format!("BT /F1 12 Tf ({}) Tj ET", "x".repeat(200)).into_bytes();
        let pdf = pdf_with_content(
            "",
            &"/X0 Do ".repeat(64).into_bytes(),
            &[
                (res, c0.as_slice()),
                ("/Resources << /XObject << /X2 8 0 R >> >>", c1.as_slice()),
                ("/Resources << /Font << /F1 5 0 R >> >>", c2.as_slice()),
            ],
        );
        let limits = ExtractLimits { pdf_max_decompressed_bytes: 1024 * 1024, ..ExtractLimits::default() };
        let e = extract_text_within(&pdf, DocumentFormat::Pdf, &limits).unwrap_err();
        assert!(matches!(e, ExtractError::PdfTooLarge { .. }), "{e}");
    }

    #[test]
    fn pdf_extraction_stops_at_its_deadline() {
        let pdf = minimal_pdf("Words that take no time at all.");
        let limits = ExtractLimits { pdf_max_time: Duration::ZERO, ..ExtractLimits::default() };
        let e = extract_text_within(&pdf, DocumentFormat::Pdf, &limits).unwrap_err();
        assert_eq!(e, ExtractError::PdfTimeout { ms: 0 });
        assert!(e.to_string().contains("longer than 0 ms"), "{e}");
    }
}
