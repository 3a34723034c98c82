//! Notification templates (minijinja): a template `NAME` has up to four parts,
//! `NAME.subject`, `NAME.txt`, `NAME.html` and `NAME.sms`. Built in:
//! `room_invitation`, `room_cancelled`, `room_summary` (`templates/`); files in
//! `notify.templates_dir` add templates or replace built-in parts. Rendering is
//! strict (an undefined variable is an error) and happens when a notification is
//! accepted, so a bad template is the caller's error, never a failed delivery.
//! HTML parts are auto-escaped.

use std::collections::BTreeSet;
use std::path::Path;

use minijinja::{Environment, UndefinedBehavior};

const BUILT_IN: &[(&str, &str)] = &[
    ("room_invitation.subject", include_str!("templates/room_invitation.subject")),
    ("room_invitation.txt", include_str!("templates/room_invitation.txt")),
    ("room_invitation.html", include_str!("templates/room_invitation.html")),
    ("room_invitation.sms", include_str!("templates/room_invitation.sms")),
    ("room_cancelled.subject", include_str!("templates/room_cancelled.subject")),
    ("room_cancelled.txt", include_str!("templates/room_cancelled.txt")),
    ("room_cancelled.html", include_str!("templates/room_cancelled.html")),
    ("room_cancelled.sms", include_str!("templates/room_cancelled.sms")),
    ("room_summary.subject", include_str!("templates/room_summary.subject")),
    ("room_summary.txt", include_str!("templates/room_summary.txt")),
    ("room_summary.html", include_str!("templates/room_summary.html")),
    ("room_summary.sms", include_str!("templates/room_summary.sms")),
];

const PARTS: &[&str] = &["subject", "txt", "html", "sms"];

/// The rendered parts of a template (those it has).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub sms: Option<String>,
}

/// The loaded templates.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    names: BTreeSet<String>,
}

impl Templates {
    /// The built-in templates, plus `dir`'s `NAME.{subject,txt,html,sms}` files.
    pub fn load(dir: Option<&Path>) -> Result<Templates, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") { minijinja::AutoEscape::Html } else { minijinja::AutoEscape::None }
        });
        let mut names = BTreeSet::new();
        let mut add = |env: &mut Environment<'static>, name: String, source: String| -> Result<(), String> {
            let base = name.rsplit_once('.').map(|(b, _)| b.to_string()).unwrap_or_default();
            env.add_template_owned(name.clone(), source).map_err(|e| format!("template {name}: {e}"))?;
            names.insert(base);
            Ok(())
        };
        for (name, source) in BUILT_IN {
            add(&mut env, name.to_string(), source.trim_end_matches('\n').to_string())?;
        }
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| format!("cannot read notify.templates_dir {}: {e}", dir.display()))?;
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(file) = path.file_name().and_then(|f| f.to_str()) else { continue };
                let Some((_, part)) = file.rsplit_once('.') else { continue };
                if !PARTS.contains(&part) {
                    continue;
                }
                let source =
                    std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                add(&mut env, file.to_string(), source.trim_end_matches('\n').to_string())?;
            }
        }
        Ok(Templates { env, names })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// Renders every part template `name` has with `context`.
    pub fn render(&self, name: &str, context: &serde_json::Value) -> Result<Rendered, String> {
        if !self.names.contains(name) {
            let known: Vec<&str> = self.names().collect();
            return Err(format!("unknown template `{name}`: known ones are {}", known.join(", ")));
        }
        let part = |p: &str| -> Result<Option<String>, String> {
            match self.env.get_template(&format!("{name}.{p}")) {
                Ok(t) => t.render(context).map(Some).map_err(|e| format!("template {name}.{p}: {e:#}")),
                Err(_) => Ok(None),
            }
        };
        Ok(Rendered { subject: part("subject")?, text: part("txt")?, html: part("html")?, sms: part("sms")? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> serde_json::Value {
        serde_json::json!({
            "entity": {"name": "Acme"},
            "room": {"title": "Weekly <sync>", "scheduled_for": null, "cancel_reason": "no quorum", "duration_minutes": 31},
            "participant": {"display_name": "Ada"},
            "participants": ["Ada", "Ben"],
            "transcript": [{"speaker": "Ada", "text": "hello"}],
            "segments": 1,
        })
    }

    #[test]
    fn built_in_templates_render_and_escape_html_only() {
        let t = Templates::load(None).unwrap();
        assert_eq!(t.names().collect::<Vec<_>>(), ["room_cancelled", "room_invitation", "room_summary"]);
        let r = t.render("room_invitation", &ctx()).unwrap();
        assert_eq!(r.subject.as_deref(), Some("Invitation: Weekly <sync>"));
        assert!(r.text.unwrap().contains("you are invited to \"Weekly <sync>\""));
        assert!(r.html.unwrap().contains("Weekly &lt;sync&gt;"));
        let s = t.render("room_summary", &ctx()).unwrap();
        assert!(s.text.unwrap().contains("31 min with 2 participant(s): Ada, Ben"));
        let c = t.render("room_cancelled", &ctx()).unwrap();
        assert!(c.sms.unwrap().contains("(no quorum)"));
    }

    #[test]
    fn errors_name_the_template() {
        let t = Templates::load(None).unwrap();
        assert!(t.render("nope", &ctx()).unwrap_err().contains("known ones are room_cancelled"));
        let err = t.render("room_invitation", &serde_json::json!({})).unwrap_err();
        assert!(err.contains("room_invitation.subject"), "{err}");
    }

    #[test]
    fn a_directory_adds_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("welcome.subject"), "Welcome {{ name }}").unwrap();
        std::fs::write(dir.path().join("welcome.txt"), "Hi {{ name }}\n").unwrap();
        std::fs::write(dir.path().join("room_invitation.subject"), "Join {{ room.title }}").unwrap();
        std::fs::write(dir.path().join("notes.md"), "ignored").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let w = t.render("welcome", &serde_json::json!({"name": "Ada"})).unwrap();
        assert_eq!((w.subject.as_deref(), w.text.as_deref(), w.html), (Some("Welcome Ada"), Some("Hi Ada"), None));
        assert_eq!(t.render("room_invitation", &ctx()).unwrap().subject.as_deref(), Some("Join Weekly <sync>"));
        std::fs::write(dir.path().join("broken.txt"), "{% if %}").unwrap();
        assert!(Templates::load(Some(dir.path())).unwrap_err().contains("broken.txt"));
    }
}
