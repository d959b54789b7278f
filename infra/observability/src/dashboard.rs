//! The dashboard of metrics.yaml as the template's `AWS::CloudWatch::Dashboard`, its body JSON in a `!Sub`.

use crate::json::{obj, s, J};
use crate::source::Metrics;
use crate::source::{Alarm, Row, Source, Widget};
use crate::WIDTH;

/// Columns of a dashboard row.
const COLUMNS: u32 = 24;

/// The dashboard resource, at two spaces (a key of Resources).
pub fn dashboard(source: &Source, metrics: &Metrics) -> Result<String, String> {
    let mut widgets = Vec::new();
    let mut y = 0;
    for row in &source.dashboard.rows {
        widgets.extend(self::row(row, y, source, metrics)?);
        y += row.height;
    }
    let body = obj([("widgets", J::Arr(widgets))]);
    let pad = " ".repeat(8);
    let json: String = body.pretty(0, 0, WIDTH - pad.len()).lines().map(|l| format!("{pad}{l}\n")).collect();
    Ok(format!(
        "  Dashboard:\n    Type: AWS::CloudWatch::Dashboard\n    Properties:\n      DashboardName: !Sub \"${{AWS::StackName}}\"\n      DashboardBody: !Sub |\n{json}"
    ))
}

fn row(row: &Row, y: u32, source: &Source, metrics: &Metrics) -> Result<Vec<J>, String> {
    let count = u32::try_from(row.widgets.len()).map_err(|_| "a row of too many widgets")?;
    if count == 0 || COLUMNS % count != 0 {
        return Err(format!("a dashboard row of {count} widgets: {COLUMNS} columns do not divide evenly"));
    }
    let width = COLUMNS / count;
    let mut out = Vec::new();
    for (i, w) in (0..).zip(&row.widgets) {
        let (kind, properties) = widget(w, source, metrics)?;
        let n = |v: u32| J::Num(f64::from(v));
        out.push(obj([
            ("type", s(kind)),
            ("x", n(i * width)),
            ("y", n(y)),
            ("width", n(width)),
            ("height", n(row.height)),
            ("properties", properties),
        ]));
    }
    Ok(out)
}

/// The widget's type and properties.
fn widget(w: &Widget, source: &Source, metrics: &Metrics) -> Result<(&'static str, J), String> {
    let graph = w.stat.is_some() || w.period.is_some() || !w.lines.is_empty() || w.alarm_line.is_some();
    match (&w.text, &w.alarms, &w.title) {
        (Some(text), None, None) if !graph => Ok(("text", obj([("markdown", s(text))]))),
        (None, Some(title), None) if !graph => {
            let arns = source.alarms.iter().map(|a| s(&format!("${{{}.Arn}}", a.id))).collect();
            Ok(("alarm", obj([("title", s(title)), ("alarms", J::Arr(arns))])))
        }
        (None, None, Some(title)) => Ok(("metric", self::graph(title, w, &source.alarms, metrics)?)),
        _ => Err(format!("a widget must be one of `text`, `alarms`, or `title` with `lines`: {w:?}")),
    }
}

fn graph(title: &str, w: &Widget, alarms: &[Alarm], metrics: &Metrics) -> Result<J, String> {
    let period = w.period.ok_or_else(|| format!("the graph {title:?} has no period"))?;
    let mut lines = Vec::new();
    for line in &w.lines {
        for (function, m) in metrics.expand(&line.metric)? {
            let label = match (function, &line.label) {
                (Some(f), None) => f.label.clone(),
                (None, Some(label)) => label.clone(),
                (Some(_), Some(_)) => return Err(format!("{title:?}: {} is per function: no label", line.metric)),
                (None, None) => return Err(format!("{title:?}: the line of {} has no label", line.metric)),
            };
            let mut items = vec![s(&m.namespace), s(&m.name)];
            for (k, v) in &m.dimensions {
                items.extend([s(k), s(v)]);
            }
            let mut options = Vec::new();
            if let Some(stat) = &line.stat {
                options.push(("stat".to_owned(), s(stat)));
            }
            options.push(("label".to_owned(), J::Str(label)));
            items.push(J::Obj(options));
            lines.push(J::Line(items));
        }
    }
    if lines.is_empty() {
        return Err(format!("the graph {title:?} has no lines"));
    }
    let mut properties = vec![
        ("title".to_owned(), s(title)),
        ("region".to_owned(), s("${AWS::Region}")),
        ("view".to_owned(), s("timeSeries")),
        ("stacked".to_owned(), J::Bool(false)),
    ];
    if let Some(stat) = &w.stat {
        properties.push(("stat".to_owned(), s(stat)));
    }
    properties.push(("period".to_owned(), J::Num(f64::from(period))));
    properties.push(("metrics".to_owned(), J::Arr(lines)));
    if let Some(id) = &w.alarm_line {
        let alarm = alarms.iter().find(|a| a.id == *id).ok_or_else(|| format!("{title:?}: no alarm {id}"))?;
        let line = obj([("label", s("Alarm")), ("value", J::Num(alarm.threshold))]);
        properties.push(("annotations".to_owned(), obj([("horizontal", J::Arr(vec![line]))])));
    }
    Ok(J::Obj(properties))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::load;

    const TEMPLATE: &str =
        "Resources:\n  AFunction: {Type: AWS::Serverless::Function}\n  BFunction: {Type: AWS::Serverless::Function}\n";

    fn body(rows: &str) -> Result<serde_json::Value, String> {
        let source = format!(
            "metrics:\n  - {{namespace: AWS/Lambda, per_function: true, names: [Errors]}}\nalarms:\n  - {{id: EAlarm, name: e, description: d, inputs: {{e: Errors}}, expression: {{id: t, label: t, math: \"SUM([{{e}}])\"}}, stat: Sum, period: 60, comparison: GreaterThanThreshold, threshold: 2}}\ndashboard:\n  rows:\n{rows}"
        );
        let (source, metrics) = load(&source, TEMPLATE)?;
        let yaml = dashboard(&source, &metrics)?;
        let text = yaml.split_once("!Sub |\n").map(|(_, json)| json).ok_or("no body")?;
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn rows_share_the_columns_and_stack_by_height() {
        let b = body("    - {height: 4, widgets: [{alarms: Alarms}]}\n    - widgets:\n        - {title: E, period: 60, lines: [{metric: Errors}], alarm_line: EAlarm}\n        - {text: hi}\n        - {text: there}\n").unwrap();
        let w = &b["widgets"];
        let place = |i: usize| [&w[i]["x"], &w[i]["y"], &w[i]["width"], &w[i]["height"]].map(|v| v.as_u64().unwrap());
        assert_eq!(
            [place(0), place(1), place(2), place(3)],
            [[0, 0, 24, 4], [0, 4, 8, 6], [8, 4, 8, 6], [16, 4, 8, 6]]
        );
        assert_eq!(w[0]["properties"]["alarms"], serde_json::json!(["${EAlarm.Arn}"]));
        let lines = &w[1]["properties"]["metrics"];
        assert_eq!(
            lines[1],
            serde_json::json!(["AWS/Lambda", "Errors", "FunctionName", "${BFunction}", {"label": "b"}])
        );
        assert_eq!(w[1]["properties"]["annotations"]["horizontal"][0]["value"], 2.0);
    }

    #[test]
    fn a_widget_is_one_kind_with_what_that_kind_needs() {
        assert!(body("    - widgets: [{text: a}, {text: b}, {text: c}, {text: d}, {text: e}]\n")
            .unwrap_err()
            .contains("5 widgets"));
        assert!(body("    - widgets: [{text: a, title: b}]\n").unwrap_err().contains("one of"));
        assert!(body("    - widgets: [{title: E, period: 60, lines: [{metric: Errors, label: x}]}]\n")
            .unwrap_err()
            .contains("per function"));
        assert!(body("    - widgets: [{title: E, lines: [{metric: Errors}]}]\n").unwrap_err().contains("period"));
        assert!(body("    - widgets: [{title: E, period: 60, lines: [{metric: Errors}], alarm_line: X}]\n")
            .unwrap_err()
            .contains("no alarm X"));
    }
}
