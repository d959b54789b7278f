//! metrics.yaml as read, checked, and its metrics resolved (per-function ones against template.yaml's functions).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    metrics: Vec<Group>,
    pub alarms: Vec<Alarm>,
    pub dashboard: Dashboard,
}

/// Metrics of one namespace with the same dimensions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    namespace: String,
    #[serde(default)]
    dimensions: Mapping,
    #[serde(default)]
    per_function: bool,
    names: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alarm {
    /// The logical id of the alarm resource.
    pub id: String,
    /// The alarm's name after `<stack>-`.
    pub name: String,
    pub description: String,
    /// One metric, or `inputs` with an `expression`.
    pub metric: Option<String>,
    /// Metric math: id → metric name, in order.
    #[serde(default)]
    pub inputs: Mapping,
    pub expression: Option<Expression>,
    pub stat: String,
    pub period: u32,
    pub comparison: String,
    pub threshold: f64,
    /// EvaluationPeriods and DatapointsToAlarm.
    #[serde(default = "one")]
    pub periods: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expression {
    pub id: String,
    pub label: String,
    pub math: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    pub rows: Vec<Row>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    #[serde(default = "six")]
    pub height: u32,
    pub widgets: Vec<Widget>,
}

fn six() -> u32 {
    6
}

/// A text (`text`), the alarms (`alarms`, its title) or a graph (`title` and `lines`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Widget {
    pub text: Option<String>,
    pub alarms: Option<String>,
    pub title: Option<String>,
    pub stat: Option<String>,
    pub period: Option<u32>,
    #[serde(default)]
    pub lines: Vec<Line>,
    /// An alarm whose threshold the graph draws.
    pub alarm_line: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub metric: String,
    pub stat: Option<String>,
    /// Required, except for a per-function metric (each line is labelled with its function).
    pub label: Option<String>,
}

/// A function of template.yaml as its per-function metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// `SendCodeFunction`.
    pub id: String,
    /// `send-code`: a graph line's label.
    pub label: String,
    /// `sendCode`: a metric-math id.
    pub key: String,
}

/// One metric as CloudWatch names it. Dimension values are in `!Sub` syntax (`${HttpApi}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub namespace: String,
    pub name: String,
    pub dimensions: Vec<(String, String)>,
}

/// The metrics of metrics.yaml by name.
#[derive(Debug)]
pub struct Metrics {
    groups: BTreeMap<String, (Metric, bool)>,
    pub functions: Vec<Function>,
}

impl Metrics {
    /// `name` as the metrics it stands for: one, or one per function with its function.
    pub fn expand(&self, name: &str) -> Result<Vec<(Option<&Function>, Metric)>, String> {
        let (metric, per_function) =
            self.groups.get(name).ok_or_else(|| format!("the metric {name} is not under `metrics`"))?;
        if !per_function {
            return Ok(vec![(None, metric.clone())]);
        }
        Ok(self
            .functions
            .iter()
            .map(|f| {
                let mut m = metric.clone();
                m.dimensions.push(("FunctionName".into(), format!("${{{}}}", f.id)));
                (Some(f), m)
            })
            .collect())
    }

    pub fn per_function(&self, name: &str) -> bool {
        self.groups.get(name).is_some_and(|(_, per)| *per)
    }
}

/// Reads metrics.yaml; `template` (template.yaml) gives the functions.
pub fn load(source: &str, template: &str) -> Result<(Source, Metrics), String> {
    let source: Source = serde_yaml_ng::from_str(source).map_err(|e| format!("metrics.yaml: {e}"))?;
    let mut groups = BTreeMap::new();
    for g in &source.metrics {
        let mut dimensions = Vec::new();
        for (k, v) in &g.dimensions {
            let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
                return Err(format!("metrics.yaml: a dimension of {} is not a name: value", g.namespace));
            };
            dimensions.push((k.to_owned(), v.to_owned()));
        }
        for name in &g.names {
            let metric = Metric { namespace: g.namespace.clone(), name: name.clone(), dimensions: dimensions.clone() };
            if groups.insert(name.clone(), (metric, g.per_function)).is_some() {
                return Err(format!("metrics.yaml: the metric {name} is listed twice"));
            }
        }
    }
    let metrics = Metrics { groups, functions: functions(template)? };
    let used = used(&source)?;
    if let Some(unused) = metrics.groups.keys().find(|name| !used.contains(name.as_str())) {
        return Err(format!("metrics.yaml: no alarm or widget uses the metric {unused}: remove it"));
    }
    Ok((source, metrics))
}

/// Every metric name an alarm or a widget uses.
fn used(source: &Source) -> Result<BTreeSet<&str>, String> {
    let mut used = BTreeSet::new();
    for alarm in &source.alarms {
        used.extend(alarm.metric.as_deref());
        for (id, metric) in &alarm.inputs {
            let metric = metric.as_str().ok_or_else(|| format!("{}: the input {id:?} names no metric", alarm.id))?;
            used.insert(metric);
        }
    }
    for widget in source.dashboard.rows.iter().flat_map(|r| &r.widgets) {
        used.extend(widget.lines.iter().map(|l| l.metric.as_str()));
    }
    Ok(used)
}

/// The `AWS::Serverless::Function`s of template.yaml, in its order.
pub fn functions(template: &str) -> Result<Vec<Function>, String> {
    let doc: Value = serde_yaml_ng::from_str(template).map_err(|e| format!("template.yaml: {e}"))?;
    let resources = doc["Resources"].as_mapping().ok_or("template.yaml has no Resources")?;
    let mut out = Vec::new();
    for (id, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let id = id.as_str().ok_or("template.yaml: a resource id that is not a string")?;
        let base = id.strip_suffix("Function").filter(|b| !b.is_empty()).ok_or_else(|| {
            format!("template.yaml: the function {id}'s id does not end in Function (its metrics are labelled by it)")
        })?;
        let mut label = String::new();
        for (i, c) in base.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                label.push('-');
            }
            label.push(c.to_ascii_lowercase());
        }
        let mut chars = base.chars();
        let key = chars.next().map(|c| c.to_ascii_lowercase().to_string() + chars.as_str()).unwrap_or_default();
        out.push(Function { id: id.to_owned(), label, key });
    }
    if out.is_empty() {
        return Err("template.yaml has no AWS::Serverless::Function".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "Resources:\n  T: {Type: AWS::DynamoDB::Table}\n  SendCodeFunction: {Type: AWS::Serverless::Function}\n  AppStoreNotificationsFunction: {Type: AWS::Serverless::Function}\n";

    #[test]
    fn functions_are_labelled_and_keyed_from_their_logical_ids_in_template_order() {
        let got = functions(TEMPLATE).unwrap();
        let want = [
            ("SendCodeFunction", "send-code", "sendCode"),
            ("AppStoreNotificationsFunction", "app-store-notifications", "appStoreNotifications"),
        ];
        let got: Vec<_> = got.iter().map(|f| (f.id.as_str(), f.label.as_str(), f.key.as_str())).collect();
        assert_eq!(got, want);
        let odd = functions("Resources:\n  Worker: {Type: AWS::Serverless::Function}\n").unwrap_err();
        assert!(odd.contains("Worker"), "{odd}");
    }

    const SOURCE: &str = r#"
metrics:
  - {namespace: AWS/Lambda, per_function: true, names: [Errors]}
  - {namespace: Facemake, dimensions: {Stage: "${Stage}"}, names: [CodesSent]}
alarms:
  - {id: A, name: a, description: d, metric: CodesSent, stat: Sum, period: 60, comparison: GreaterThanThreshold, threshold: 1}
dashboard:
  rows:
    - widgets: [{title: t, period: 60, lines: [{metric: Errors}]}]
"#;

    #[test]
    fn a_per_function_metric_is_one_per_function_and_the_others_are_as_written() {
        let (source, metrics) = load(SOURCE, TEMPLATE).unwrap();
        assert_eq!(source.alarms[0].periods, 1);
        assert_eq!(source.dashboard.rows[0].height, 6);
        let errors = metrics.expand("Errors").unwrap();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[1].0.map(|f| f.key.as_str()), Some("appStoreNotifications"));
        assert_eq!(
            errors[1].1.dimensions,
            [("FunctionName".to_owned(), "${AppStoreNotificationsFunction}".to_owned())]
        );
        let sent = metrics.expand("CodesSent").unwrap();
        assert_eq!(
            sent[0],
            (
                None,
                Metric {
                    namespace: "Facemake".into(),
                    name: "CodesSent".into(),
                    dimensions: vec![("Stage".into(), "${Stage}".into())]
                }
            )
        );
        assert!(metrics.expand("CodesVerified").unwrap_err().contains("CodesVerified"));
    }

    #[test]
    fn every_metric_is_listed_once_and_used() {
        let unused = SOURCE.replace("names: [CodesSent]", "names: [CodesSent, SignUps]");
        assert!(load(&unused, TEMPLATE).unwrap_err().contains("SignUps"));
        let twice = SOURCE.replace("names: [Errors]", "names: [Errors, CodesSent]");
        assert!(load(&twice, TEMPLATE).unwrap_err().contains("twice"));
        let typo = SOURCE.replace("stat: Sum,", "statistic: Sum,");
        assert!(load(&typo, TEMPLATE).unwrap_err().contains("statistic"));
    }
}
