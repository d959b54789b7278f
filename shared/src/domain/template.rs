//! The style catalogue: templates, categories, and the seed file both the local API and the admin tool load.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// A slug: 1–64 characters of `a-z`, `0-9` and `-`, not starting or ending with `-`.
fn parse_slug(s: &str, what: &'static str) -> Result<String, InvalidValue> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(InvalidValue(what))
    }
}

macro_rules! slug_id {
    ($name:ident, $what:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, InvalidValue> {
                parse_slug(s, $what).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(s: String) -> Result<Self, InvalidValue> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

slug_id!(TemplateId, "a template id is 1-64 characters of a-z, 0-9 and '-'");
slug_id!(CategoryId, "a category id is 1-64 characters of a-z, 0-9 and '-'");

/// Which image provider renders a template (issue: generation pipeline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Openai,
    Replicate,
}

/// How a template is rendered: server-side only, never in a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerationSpec {
    pub provider: Provider,
    pub model: String,
    pub prompt: String,
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
}

/// A style template. The app sees everything but `generation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    pub id: TemplateId,
    pub name: String,
    pub description: String,
    pub category: CategoryId,
    pub tags: Vec<String>,
    /// The preview image: a path under the stage's preview base URL, or an absolute `https://` URL.
    pub preview: String,
    pub cost_credits: u64,
    pub trending: bool,
    pub sort_order: i64,
    pub active: bool,
    pub generation: GenerationSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Category {
    pub id: CategoryId,
    pub name: String,
    pub sort_order: i64,
}

/// The seed file (`infra/catalogue/catalogue.yaml`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogueFile {
    pub categories: Vec<Category>,
    pub templates: Vec<SeedTemplate>,
}

/// A template as the seed file writes it: the same fields, with unknown ones refused (a typo in an optional
/// field would otherwise be silently dropped).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedTemplate {
    pub id: TemplateId,
    pub name: String,
    pub description: String,
    pub category: CategoryId,
    pub tags: Vec<String>,
    pub preview: String,
    pub cost_credits: u64,
    pub trending: bool,
    pub sort_order: i64,
    pub active: bool,
    pub generation: GenerationSpec,
}

impl From<SeedTemplate> for Template {
    fn from(t: SeedTemplate) -> Self {
        Self {
            id: t.id,
            name: t.name,
            description: t.description,
            category: t.category,
            tags: t.tags,
            preview: t.preview,
            cost_credits: t.cost_credits,
            trending: t.trending,
            sort_order: t.sort_order,
            active: t.active,
            generation: t.generation,
        }
    }
}

/// A catalogue that passed [`CatalogueFile::parse`]: ids unique, references resolved, limits kept.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedCatalogue {
    pub categories: Vec<Category>,
    pub templates: Vec<Template>,
}

fn check_text(errors: &mut Vec<String>, at: &str, field: &str, value: &str, max: usize) {
    let n = value.trim().chars().count();
    if n == 0 || n > max || value.chars().any(char::is_control) {
        errors.push(format!("{at}: {field} must be 1-{max} characters without control characters"));
    }
}

/// Is `preview` a safe relative path (no `..`, no absolute path) or an `https://` URL?
fn preview_ok(preview: &str) -> bool {
    if let Some(rest) = preview.strip_prefix("https://") {
        return !rest.is_empty();
    }
    !preview.is_empty()
        && !preview.starts_with('/')
        && preview.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && preview.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
}

impl CatalogueFile {
    /// Parses and checks a seed file; every problem is listed, with the template it belongs to.
    pub fn parse(yaml: &str) -> Result<SeedCatalogue, String> {
        let file: CatalogueFile = serde_yaml_ng::from_str(yaml).map_err(|e| format!("catalogue file: {e}"))?;
        file.validate()
    }

    pub fn validate(self) -> Result<SeedCatalogue, String> {
        let mut errors = Vec::new();
        let mut category_ids = HashSet::new();
        for c in &self.categories {
            if !category_ids.insert(c.id.clone()) {
                errors.push(format!("category {}: duplicate id", c.id));
            }
            check_text(&mut errors, &format!("category {}", c.id), "name", &c.name, 60);
        }
        let mut template_ids = HashSet::new();
        for t in &self.templates {
            let at = format!("template {}", t.id);
            if !template_ids.insert(t.id.clone()) {
                errors.push(format!("{at}: duplicate id"));
            }
            if !category_ids.contains(&t.category) {
                errors.push(format!("{at}: unknown category {}", t.category));
            }
            check_text(&mut errors, &at, "name", &t.name, 60);
            check_text(&mut errors, &at, "description", &t.description, 280);
            check_text(&mut errors, &at, "generation.prompt", &t.generation.prompt, 4000);
            check_text(&mut errors, &at, "generation.model", &t.generation.model, 200);
            if t.tags.is_empty() || t.tags.len() > 8 {
                errors.push(format!("{at}: 1-8 tags"));
            }
            for tag in &t.tags {
                check_text(&mut errors, &at, "tag", tag, 30);
            }
            if !(1..=100).contains(&t.cost_credits) {
                errors.push(format!("{at}: costCredits must be 1-100"));
            }
            if !preview_ok(&t.preview) {
                errors.push(format!("{at}: preview must be a relative path without '..' or an https URL"));
            }
        }
        if errors.is_empty() {
            Ok(SeedCatalogue {
                categories: self.categories,
                templates: self.templates.into_iter().map(Template::from).collect(),
            })
        } else {
            Err(errors.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(TemplateId::parse("neon-noir").is_ok());
        assert!(TemplateId::parse("a").is_ok());
        for bad in ["", "-a", "a-", "Neon", "a b", "a_b", "ä", &"a".repeat(65)] {
            assert!(TemplateId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn preview_paths() {
        assert!(preview_ok("previews/a.jpg"));
        assert!(preview_ok("https://cdn.example.com/a.jpg"));
        for bad in ["", "/etc/passwd", "../x.jpg", "a/../b.jpg", "a//b.jpg", "http://x/a.jpg", "a?.jpg"] {
            assert!(!preview_ok(bad), "{bad:?}");
        }
    }

    const GOOD: &str = r#"
categories:
  - {id: portrait, name: Portrait, sortOrder: 1}
templates:
  - id: one
    name: One
    description: The first.
    category: portrait
    tags: [a]
    preview: previews/one.jpg
    costCredits: 1
    trending: false
    sortOrder: 1
    active: true
    generation: {provider: openai, model: gpt-image-1, prompt: Make it one., params: {size: 1024x1024}}
"#;

    #[test]
    fn a_good_file_parses() {
        let c = CatalogueFile::parse(GOOD).unwrap();
        assert_eq!(c.templates[0].id.as_str(), "one");
        assert_eq!(c.templates[0].generation.params["size"], "1024x1024");
    }

    #[test]
    fn every_problem_is_named() {
        let bad = GOOD.replace("category: portrait", "category: nope").replace("costCredits: 1", "costCredits: 0");
        let err = CatalogueFile::parse(&bad).unwrap_err();
        assert!(err.contains("template one: unknown category nope"), "{err}");
        assert!(err.contains("template one: costCredits"), "{err}");
        // A typo is refused, not dropped.
        let typo = GOOD.replace("trending: false", "trending: false\n    trendy: true");
        assert!(CatalogueFile::parse(&typo).unwrap_err().contains("trendy"));
        let dup = format!("{GOOD}{}", &GOOD[GOOD.find("  - id: one").unwrap()..]);
        assert!(CatalogueFile::parse(&dup).unwrap_err().contains("duplicate id"));
    }

    #[test]
    fn the_shipped_seed_catalogue_is_valid() {
        let yaml = include_str!("../../../infra/catalogue/catalogue.yaml");
        let c = CatalogueFile::parse(yaml).unwrap();
        assert!(c.templates.len() >= 12, "at least 12 templates");
        let categories: HashSet<_> = c.templates.iter().map(|t| &t.category).collect();
        assert!(categories.len() >= 4, "in at least 4 categories");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/catalogue");
        for t in &c.templates {
            assert!(dir.join(&t.preview).is_file(), "preview of {} exists", t.id);
        }
    }
}
