//! template.yaml's alarms and dashboard are exactly what infra/observability/metrics.yaml makes.

const TEMPLATE: &str = include_str!("../../../template.yaml");
const SOURCE: &str = include_str!("../metrics.yaml");

#[test]
fn template_yaml_holds_what_metrics_yaml_makes() {
    let regenerated = observability::regenerate(SOURCE, TEMPLATE).unwrap_or_else(|e| panic!("{e}"));
    if regenerated == TEMPLATE {
        return;
    }
    let (line, (want, got)) = regenerated
        .lines()
        .chain(std::iter::repeat(""))
        .zip(TEMPLATE.lines().chain(std::iter::repeat("")))
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .unwrap_or((0, ("", "")));
    panic!(
        "template.yaml's generated region (between \"# BEGIN GENERATED\" and \"# END GENERATED\") is not what \
         infra/observability/metrics.yaml makes: edit metrics.yaml, not the region, then run \
         `cargo run -p observability` and commit both.\nFirst difference, line {}:\n  template.yaml: {got}\n  \
         generated:     {want}",
        line + 1
    );
}
