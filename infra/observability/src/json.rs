//! A JSON value with its keys in the order written, printed compactly: what fits in the width on one line,
//! scalars packed, a metric line always whole.

/// A JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum J {
    Str(String),
    Num(f64),
    Bool(bool),
    Arr(Vec<J>),
    /// An array always printed on one line (a graph's metric line, so the body reads as a table).
    Line(Vec<J>),
    Obj(Vec<(String, J)>),
}

/// `[("a", x), ...]` as an object.
pub fn obj<const N: usize>(members: [(&str, J); N]) -> J {
    J::Obj(members.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

pub fn s(text: &str) -> J {
    J::Str(text.to_owned())
}

impl J {
    fn scalar(&self) -> bool {
        matches!(self, J::Str(_) | J::Num(_) | J::Bool(_))
    }

    /// On one line, with `", "` and `": "` between items.
    pub fn compact(&self) -> String {
        let items = |v: &[J]| v.iter().map(J::compact).collect::<Vec<_>>().join(", ");
        match self {
            J::Str(s) => serde_json::Value::String(s.clone()).to_string(),
            J::Num(n) => n.to_string(),
            J::Bool(b) => b.to_string(),
            J::Arr(v) | J::Line(v) => format!("[{}]", items(v)),
            J::Obj(m) => {
                let members: Vec<String> =
                    m.iter().map(|(k, v)| format!("{}: {}", s(k).compact(), v.compact())).collect();
                format!("{{{}}}", members.join(", "))
            }
        }
    }

    /// Printed at `column` (where the value starts) on a line indented `indent`, no line past `width`
    /// where that can be helped.
    pub fn pretty(&self, indent: usize, column: usize, width: usize) -> String {
        let compact = self.compact();
        let members: Vec<(Option<&str>, &J)> = match self {
            J::Arr(v) if column + compact.len() > width => v.iter().map(|j| (None, j)).collect(),
            J::Obj(m) if column + compact.len() > width => m.iter().map(|(k, v)| (Some(k.as_str()), v)).collect(),
            _ => return compact,
        };
        let (open, close) = if matches!(self, J::Obj(_)) { ('{', '}') } else { ('[', ']') };
        let inner = indent + 2;
        let pad = " ".repeat(inner);
        let mut out = format!("{open}\n");
        let mut line = String::new();
        let last = members.len().saturating_sub(1);
        for (i, (key, value)) in members.into_iter().enumerate() {
            let prefix = key.map(|k| format!("{}: ", s(k).compact())).unwrap_or_default();
            let comma = if i < last { "," } else { "" };
            if value.scalar() {
                let piece = format!("{prefix}{}{comma}", value.compact());
                if !line.is_empty() && inner + line.len() + 1 + piece.len() > width {
                    out.push_str(&format!("{pad}{line}\n"));
                    line.clear();
                }
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(&piece);
            } else {
                if !line.is_empty() {
                    out.push_str(&format!("{pad}{line}\n"));
                    line.clear();
                }
                let body = value.pretty(inner, inner + prefix.len(), width);
                out.push_str(&format!("{pad}{prefix}{body}{comma}\n"));
            }
        }
        if !line.is_empty() {
            out.push_str(&format!("{pad}{line}\n"));
        }
        out.push_str(&" ".repeat(indent));
        out.push(close);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> J {
        obj([(
            "widgets",
            J::Arr(vec![obj([
                ("type", s("metric")),
                ("x", J::Num(0.0)),
                ("width", J::Num(12.0)),
                (
                    "properties",
                    obj([
                        ("title", s("A \"quoted\" title")),
                        ("stacked", J::Bool(false)),
                        ("period", J::Num(300.0)),
                        (
                            "metrics",
                            J::Arr(vec![
                                J::Line(vec![
                                    s("AWS/Lambda"),
                                    s("Errors"),
                                    s("FunctionName"),
                                    s("${SendCodeFunction}"),
                                    obj([("label", s("send-code"))])
                                ]);
                                2
                            ]),
                        ),
                        ("annotations", obj([("value", J::Num(0.5))])),
                    ]),
                ),
            ])]),
        )])
    }

    #[test]
    fn pretty_packs_scalars_keeps_lines_whole_and_parses_back_the_same() {
        let text = sample().pretty(0, 0, 60);
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        let same: serde_json::Value = serde_json::from_str(&sample().compact()).unwrap();
        assert_eq!(back, same);
        assert!(text.contains("\n      \"type\": \"metric\", \"x\": 0, \"width\": 12,\n"), "{text}");
        assert!(
            text.contains(r#"["AWS/Lambda", "Errors", "FunctionName", "${SendCodeFunction}", {"label": "send-code"}]"#),
            "{text}"
        );
        assert!(text.contains(r#""annotations": {"value": 0.5}"#), "{text}");
        assert_eq!(sample().pretty(0, 0, 1000), sample().compact(), "what fits stays on one line");
    }
}
