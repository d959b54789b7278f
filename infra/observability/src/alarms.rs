//! An alarm of metrics.yaml as the template's `AWS::CloudWatch::Alarm` resource.

use crate::source::{Alarm, Metric, Metrics};
use crate::yaml::{folded, quoted, scalar, value};
use crate::TEXT_WIDTH;

/// What every alarm ends with: missing data is not an incident (metrics.yaml says why), and the topic is
/// told when the alarm fires and when it clears.
const FOOTER: &str = "      TreatMissingData: notBreaching
      AlarmActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]
      OKActions: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]
";

/// The alarm resource, at two spaces (a key of Resources).
pub fn alarm(a: &Alarm, metrics: &Metrics) -> Result<String, String> {
    let mut out = format!("  {}:\n    Type: AWS::CloudWatch::Alarm\n    Properties:\n", a.id);
    out.push_str(&format!("      AlarmName: {}\n", value(&format!("${{AWS::StackName}}-{}", a.name))));
    out.push_str(&folded("AlarmDescription", &a.description, 6, TEXT_WIDTH));
    match (&a.metric, a.inputs.is_empty(), &a.expression) {
        (Some(name), true, None) => {
            let mut expanded = metrics.expand(name)?;
            if expanded.len() != 1 {
                return Err(format!("{}: {name} is per function: alarm on it with inputs and an expression", a.id));
            }
            let (_, m) = expanded.remove(0);
            out.push_str(&format!(
                "      Namespace: {}\n      MetricName: {}\n",
                scalar(&m.namespace),
                scalar(&m.name)
            ));
            out.push_str(&format!("      Dimensions: {}\n", dimensions(&m)));
            out.push_str(&format!("      Statistic: {}\n      Period: {}\n", scalar(&a.stat), a.period));
        }
        (None, false, Some(e)) => {
            out.push_str("      Metrics:\n");
            let mut ids = Vec::new();
            let mut groups = Vec::new();
            for (id, name) in &a.inputs {
                let (Some(id), Some(name)) = (id.as_str(), name.as_str()) else {
                    return Err(format!("{}: an input that is not `id: metric`", a.id));
                };
                let expanded = metrics.expand(name)?;
                let mut group = Vec::new();
                for (function, m) in expanded {
                    let id = function.map_or(id, |f| f.key.as_str()).to_owned();
                    out.push_str(&format!(
                        "        - {{Id: {}, ReturnData: false, MetricStat: {{Metric: {{Namespace: {}, MetricName: {}, Dimensions: {}}}, Period: {}, Stat: {}}}}}\n",
                        scalar(&id), scalar(&m.namespace), scalar(&m.name), dimensions(&m), a.period, scalar(&a.stat)
                    ));
                    group.push(id.clone());
                    ids.push(id);
                }
                if metrics.per_function(name) {
                    groups.push((id, group.join(", ")));
                }
            }
            ids.push(e.id.clone());
            if let Some(twice) = ids.iter().enumerate().find_map(|(i, id)| ids[..i].contains(id).then_some(id)) {
                return Err(format!("{}: two inputs have the id {twice}", a.id));
            }
            let math = placeholders(&e.math, &groups).map_err(|err| format!("{}: {err}", a.id))?;
            out.push_str(&format!("        - Id: {}\n          Label: {}\n", scalar(&e.id), quoted(&e.label)));
            out.push_str(&format!("          Expression: {}\n          ReturnData: true\n", value(&math)));
        }
        _ => return Err(format!("{}: give either `metric`, or `inputs` and an `expression`", a.id)),
    }
    out.push_str(&format!("      ComparisonOperator: {}\n      Threshold: {}\n", scalar(&a.comparison), a.threshold));
    out.push_str(&format!("      EvaluationPeriods: {0}\n      DatapointsToAlarm: {0}\n", a.periods));
    out.push_str(FOOTER);
    Ok(out)
}

/// `[{Name: ..., Value: ...}, ...]`.
fn dimensions(m: &Metric) -> String {
    let each: Vec<String> =
        m.dimensions.iter().map(|(k, v)| format!("{{Name: {}, Value: {}}}", scalar(k), value(v))).collect();
    format!("[{}]", each.join(", "))
}

/// `math` with each `{input}` of a per-function input replaced by the ids it became. `${...}` is left for
/// `!Sub`; any other `{...}` is a mistake.
fn placeholders(math: &str, groups: &[(&str, String)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = math;
    while let Some(open) = rest.find('{') {
        let sub = rest[..open].ends_with('$');
        let close = rest[open..].find('}').ok_or_else(|| format!("an unclosed {{ in {math:?}"))? + open;
        let name = &rest[open + 1..close];
        out.push_str(&rest[..open]);
        if sub {
            out.push_str(&rest[open..=close]);
        } else {
            let (_, ids) = groups
                .iter()
                .find(|(id, _)| *id == name)
                .ok_or_else(|| format!("{{{name}}} in the expression is no per-function input"))?;
            out.push_str(ids);
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_the_ids_of_a_per_function_input_and_subs_stay() {
        let groups = [("errors", "a, b".to_owned())];
        assert_eq!(placeholders("SUM([{errors}])", &groups).unwrap(), "SUM([a, b])");
        assert_eq!(placeholders("IF(x >= ${Min}, 1, 0)", &groups).unwrap(), "IF(x >= ${Min}, 1, 0)");
        assert!(placeholders("SUM([{error}])", &groups).unwrap_err().contains("{error}"));
        assert!(placeholders("SUM([{errors)", &groups).is_err());
    }
}
