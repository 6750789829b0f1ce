//! `meshloop check` and `explain` through the library: a bad and a good fixture for every
//! finding code, snapshots of the text output, the sample chart, and property tests that no
//! input makes the analysis panic.
//!
//! Fixtures live in `tests/fixtures/analyze/<CODE>/`. A `bad*.yaml` marks every line where a
//! finding is expected with a trailing `# MLnnnn` comment, and the findings must be exactly
//! those; a `good*.yaml` must give no finding at all. A `<name>.live.yaml` beside a fixture
//! holds the cluster objects (Pods, EndpointSlices, Namespaces, Secrets) that stand for live
//! facts, so live-only checks run without a cluster.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use meshloop::analyze::command::{self, CheckArgs, CheckReport, Format};
use meshloop::analyze::explain::{Outcome, Request};
use meshloop::analyze::{Facts, Model, RULES, Severity, explain};
use meshloop::config::{Config, Ingress};
use meshloop::manifest::yaml;

fn fixtures() -> PathBuf {
    support::repo_root().join("tests/fixtures/analyze")
}

/// Relative to the repository so messages and snapshots do not depend on the checkout path.
fn rel(p: &Path) -> PathBuf {
    p.strip_prefix(support::repo_root())
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| p.to_path_buf())
}

fn live_facts(path: &Path) -> Option<Facts> {
    let text = std::fs::read_to_string(path).ok()?;
    let docs = yaml::parse_documents(&text, &Default::default()).expect("live fixture parses");
    let values: Vec<serde_json::Value> = docs.iter().map(|d| d.to_json()).collect();
    Some(Facts::from_json(&values))
}

/// Runs `check --offline` on one file, with the facts of its `.live.yaml` sibling if any.
fn check_file(path: &Path) -> CheckReport {
    let mut inputs = command::read_inputs(&[rel(path)], None, None).expect("fixture readable");
    let live = path.with_extension("live.yaml");
    inputs.facts = live_facts(&live);
    command::report(inputs)
}

fn markers(path: &Path) -> BTreeSet<(String, u32)> {
    let re = regex::Regex::new(r"#\s*((?:ML\d{4}\s*)+)$").unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(c) = re.captures(line) {
            for code in c[1].split_whitespace() {
                out.insert((code.to_string(), i as u32 + 1));
            }
        }
    }
    out
}

fn fixture_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".yaml") && !n.ends_with(".live.yaml")
        })
        .collect();
    files.sort();
    files
}

/// Paths in findings are as given; the tests give repository-relative paths, which works
/// because cargo runs integration tests in the package root.
fn in_repo<T>(f: impl FnOnce() -> T) -> T {
    assert_eq!(
        std::env::current_dir().unwrap().canonicalize().unwrap(),
        support::repo_root().canonicalize().unwrap()
    );
    f()
}

#[test]
fn every_code_has_a_bad_and_a_good_fixture() {
    let mut missing = Vec::new();
    for r in RULES {
        let dir = fixtures().join(r.code);
        let files: Vec<String> = if dir.is_dir() {
            fixture_files(&dir)
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        } else {
            Vec::new()
        };
        if !files.iter().any(|f| f.starts_with("bad"))
            || !files.iter().any(|f| f.starts_with("good"))
        {
            missing.push(r.code);
        }
    }
    assert!(missing.is_empty(), "codes without fixtures: {missing:?}");
}

#[test]
fn fixtures_give_exactly_the_marked_findings() {
    in_repo(|| {
        let mut failures = Vec::new();
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for dir in dirs {
            let code = dir.file_name().unwrap().to_string_lossy().into_owned();
            for file in fixture_files(&dir) {
                let name = file.file_name().unwrap().to_string_lossy().into_owned();
                let report = check_file(&file);
                let got: BTreeSet<(String, u32)> = report
                    .findings
                    .iter()
                    .map(|f| (f.code.to_string(), f.line))
                    .collect();
                let want = markers(&file);
                if name.starts_with("bad") && !want.iter().any(|(c, _)| *c == code) {
                    failures.push(format!("{code}/{name}: marks no {code}"));
                }
                if got != want {
                    failures.push(format!(
                        "{code}/{name}: expected {want:?}, got {got:?}\n{}",
                        command::render_text(&report)
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    });
}

#[test]
fn live_only_findings_say_so() {
    in_repo(|| {
        for code in ["ML0202", "ML0402", "ML0403", "ML0404"] {
            let report = check_file(&fixtures().join(code).join("bad.yaml"));
            let f = report.findings.iter().find(|f| f.code == code).unwrap();
            assert!(f.needs_live, "{code} should be marked needs_live");
        }
        // And they never appear without live facts.
        for code in ["ML0402", "ML0403", "ML0404"] {
            let path = rel(&fixtures().join(code).join("bad.yaml"));
            let inputs = command::read_inputs(&[path], None, None).unwrap();
            let report = command::report(inputs);
            assert!(
                report.findings.iter().all(|f| !f.needs_live),
                "{code}: {:?}",
                report.findings
            );
        }
    });
}

#[test]
fn severities_depend_on_what_is_known() {
    in_repo(|| {
        let sev = |dir: &str, file: &str| {
            check_file(&fixtures().join(dir).join(file))
                .findings
                .iter()
                .find(|f| f.code == dir)
                .map(|f| f.severity)
        };
        // Gateway selector: proven wrong by a gateway Deployment in the inputs, or live.
        assert_eq!(sev("ML0201", "bad.yaml"), Some(Severity::Error));
        assert_eq!(sev("ML0201", "bad-live.yaml"), Some(Severity::Error));
        // Offline with no gateway workload known: only a note naming the Helm chart's label.
        assert_eq!(
            sev("ML0201", "bad-no-gateway-known.yaml"),
            Some(Severity::Info)
        );
        let r = check_file(&fixtures().join("ML0201/bad-no-gateway-known.yaml"));
        assert!(
            r.findings[0].hint.contains("istio: ingress"),
            "{}",
            r.findings[0].hint
        );
        assert_eq!(r.exit_code(), 0);
    });
}

#[test]
fn json_output_has_the_documented_fields() {
    in_repo(|| {
        let report = check_file(&fixtures().join("ML0101/bad.yaml"));
        let v = serde_json::to_value(&report.findings).unwrap();
        let f = v
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == "ML0101")
            .unwrap();
        for k in [
            "code",
            "equivalent",
            "severity",
            "object",
            "file",
            "line",
            "col",
            "message",
            "hint",
            "needs_live",
        ] {
            assert!(f.get(k).is_some(), "missing {k} in {f}");
        }
        assert_eq!(f["code"], "ML0101");
        assert_eq!(f["equivalent"], serde_json::json!(["IST0101", "KIA1102"]));
        assert_eq!(f["severity"], "error");
        assert_eq!(f["object"], "VirtualService dev/goapp");
        assert_eq!(report.exit_code(), 1);
    });
}

#[test]
fn snapshot_of_text_output() {
    in_repo(|| {
        let path = rel(&fixtures().join("showcase.yaml"));
        let inputs = command::read_inputs(&[path], None, None).unwrap();
        insta::assert_snapshot!("check_text", command::render_text(&command::report(inputs)));
    });
}

#[test]
fn snapshot_of_a_clean_run() {
    in_repo(|| {
        let inputs =
            command::read_inputs(&[rel(&fixtures().join("ML0117/good.yaml"))], None, None).unwrap();
        insta::assert_snapshot!(
            "check_clean",
            command::render_text(&command::report(inputs))
        );
    });
}

#[tokio::test]
async fn check_on_a_missing_path_is_a_usage_error() {
    let args = CheckArgs {
        paths: vec![PathBuf::from("/nonexistent/meshloop/routing")],
        offline: true,
        format: Format::Text,
    };
    let err = command::run_check(&args, None, None).await.unwrap_err();
    assert!(err.to_string().contains("/nonexistent"), "{err}");
}

#[tokio::test]
async fn check_reads_directories_recursively() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
    std::fs::copy(
        fixtures().join("ML0117/bad.yaml"),
        dir.path().join("a/b/routing.yaml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("a/notes.txt"), "not yaml").unwrap();
    let args = CheckArgs {
        paths: vec![dir.path().to_path_buf()],
        offline: true,
        format: Format::Json,
    };
    let r = command::run_check(&args, None, None).await.unwrap();
    assert_eq!(r.files, 1);
    assert!(r.findings.iter().any(|f| f.code == "ML0117"));
    assert_eq!(r.exit_code(), 1);
}

fn helm() -> String {
    std::env::var("MESHLOOP_HELM").unwrap_or_else(|_| {
        support::bin_dir()
            .join("helm")
            .to_string_lossy()
            .into_owned()
    })
}

fn sample_config() -> Config {
    let mut config = Config::load(&support::repo_root().join("meshloop.yaml")).unwrap();
    config.helm = helm();
    config
}

/// The sample chart's Gateway selects `istio: ingress` and its gateway Pods are not in the
/// chart: offline, that must not be reported (istioctl's offline mode does, istio#40861).
#[test]
fn sample_chart_has_no_findings() {
    let config = sample_config();
    let inputs = command::read_inputs(&[], Some(&config), config.namespace.clone()).unwrap();
    assert!(inputs.objects.len() >= 3, "{:?}", inputs.objects.len());
    assert!(
        inputs.others.len() >= 3,
        "workloads from the chart: {}",
        inputs.others.len()
    );
    let r = command::report(inputs);
    assert!(r.findings.is_empty(), "{}", command::render_text(&r));
}

#[test]
fn explain_the_sample_chart() {
    let config = sample_config();
    let inputs = command::read_inputs(&[], Some(&config), config.namespace.clone()).unwrap();
    let model = Model::build(&inputs.objects, &inputs.others, None, &config.ingress);

    let ex = explain(&model, &Request::get("goapp.dev", "/fortune"));
    assert!(
        matches!(ex.outcome, Outcome::Routed { .. }),
        "{}",
        ex.render_text()
    );
    assert!(
        ex.hops
            .iter()
            .any(|h| h.step == "rule" && h.detail.contains("fortune"))
    );
    let shares: Vec<(Option<&str>, f64)> = ex
        .destinations
        .iter()
        .map(|d| (d.subset.as_deref(), d.share))
        .collect();
    assert_eq!(shares, vec![(Some("v1"), 90.0), (Some("v2"), 10.0)]);

    let ex = explain(&model, &Request::get("goapp.dev:80", "/anything"));
    assert!(
        ex.hops
            .iter()
            .any(|h| h.step == "rule" && h.detail.contains("default"))
    );

    let ex = explain(&model, &Request::get("other.dev", "/"));
    assert_eq!(ex.outcome.status(), Some(404), "{}", ex.render_text());

    let mut on_443 = Request::get("goapp.dev", "/");
    on_443.port = Some(443);
    assert!(matches!(
        explain(&model, &on_443).outcome,
        Outcome::NoListener { .. }
    ));
}

/// The model of one analyzer fixture, with its live facts when it has them.
fn fixture_model(code: &str, file: &str) -> Model {
    let path = fixtures().join(code).join(file);
    let inputs = command::read_inputs(&[rel(&path)], None, None).unwrap();
    let facts = live_facts(&path.with_extension("live.yaml"));
    Model::build(
        &inputs.objects,
        &inputs.others,
        facts.as_ref(),
        &Ingress::default(),
    )
}

#[test]
fn explain_stops_where_a_real_request_would() {
    in_repo(|| {
        // Unknown subset: Envoy has no cluster for it.
        let m = fixture_model("ML0117", "bad.yaml");
        let ex = explain(&m, &Request::get("goapp.dev", "/"));
        assert!(
            matches!(ex.outcome, Outcome::Routed { .. }),
            "{}",
            ex.render_text()
        );
        let fails = ex.destinations[1].fails_with.as_deref().unwrap();
        assert!(fails.starts_with("503"), "{fails}");

        // Live: no ready endpoints anywhere → 503 UH.
        let m = fixture_model("ML0402", "bad.yaml");
        let ex = explain(&m, &Request::get("goapp.dev", "/"));
        assert_eq!(ex.outcome.status(), Some(503), "{}", ex.render_text());
        assert!(ex.live);

        // Live and healthy: the ingress Pod is known, the Gateway selects it.
        let m = fixture_model("ML0402", "good.yaml");
        let ex = explain(&m, &Request::get("goapp.dev", "/"));
        assert!(
            matches!(ex.outcome, Outcome::Routed { .. }),
            "{}",
            ex.render_text()
        );
        assert!(
            ex.render_text().contains("1 ready: goapp-v1-abc"),
            "{}",
            ex.render_text()
        );
    });
}

#[test]
fn explain_answers_redirects_direct_responses_and_unbound_hosts() {
    in_repo(|| {
        let m = fixture_model("ML0114", "good.yaml");
        let ex = explain(&m, &Request::get("goapp.dev", "/old"));
        assert_eq!(ex.outcome.status(), Some(301));
        let ex = explain(&m, &Request::get("goapp.dev", "/teapot"));
        assert_eq!(ex.outcome, Outcome::DirectResponse { status: 418 });

        // Bound to the mesh only: 404, and the reason names the VirtualService.
        let m = fixture_model("ML0103", "bad.yaml");
        let ex = explain(&m, &Request::get("goapp.dev", "/"));
        assert_eq!(ex.outcome.status(), Some(404));
        assert!(
            ex.render_text().contains("not bound to the Gateway"),
            "{}",
            ex.render_text()
        );

        // Header matches are case-insensitive on the name.
        let m = fixture_model("ML0110", "good.yaml");
        let mut req = Request::get("goapp.dev", "/a");
        req.headers.insert("X-Canary".into(), "1".into());
        let ex = explain(&m, &req);
        assert_eq!(
            ex.destinations[0].subset.as_deref(),
            Some("v2"),
            "{}",
            ex.render_text()
        );
    });
}

#[test]
fn explain_text_snapshot() {
    let config = sample_config();
    let inputs = command::read_inputs(&[], Some(&config), config.namespace.clone()).unwrap();
    let model = Model::build(&inputs.objects, &inputs.others, None, &config.ingress);
    let ex = explain(&model, &Request::get("goapp.dev", "/fortune"));
    insta::assert_snapshot!("explain_sample", ex.render_text());
}

mod properties {
    use super::*;
    use meshloop::analyze::analyze_for_sync;
    use meshloop::manifest::{LoadOptions, load_text};
    use proptest::prelude::*;

    fn opts() -> LoadOptions {
        LoadOptions {
            owned: meshloop::config::default_owned_kinds(),
            default_namespace: "dev".into(),
            keep_others: true,
            limits: Default::default(),
        }
    }

    fn analyze_text(text: &str) {
        let l = load_text(text, "p.yaml", false, &opts());
        let f = analyze_for_sync(&l.objects, &l.others, None, &Ingress::default());
        for x in &f {
            assert!(!x.code.is_empty());
        }
        let m = Model::build(&l.objects, &l.others, None, &Ingress::default());
        let _ = explain(&m, &Request::get("goapp.dev", "/x?y=1"));
    }

    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("goapp".to_string()),
            Just("goapp.dev".to_string()),
            Just("*".to_string()),
            Just("*.dev".to_string()),
            Just("./goapp.dev".to_string()),
            Just("a/b/c".to_string()),
            Just("".to_string()),
            "[a-z.*/:-]{0,12}",
        ]
    }

    fn string_match() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("{}".to_string()),
            "[a-z/]{0,6}".prop_map(|s| format!("{{prefix: \"/{s}\"}}")),
            "[a-z/]{0,6}".prop_map(|s| format!("{{exact: \"/{s}\"}}")),
            "[a-z()\\[\\]*+?.]{0,8}".prop_map(|s| format!("{{regex: \"{s}\"}}")),
            Just("{exact: /a, regex: b}".to_string()),
        ]
    }

    /// A config assembled from plausible and implausible pieces.
    fn config() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(host(), 0..3),
            prop::collection::vec(prop_oneof![Just("gw"), Just("mesh"), Just("gw.dev"), Just("x/y"), Just("./gw")], 0..3),
            prop::collection::vec((prop::option::of(string_match()), prop::collection::vec((host(), prop::option::of("v[0-3]"), prop::option::of(-5i64..200)), 0..3)), 0..4),
            prop::collection::vec(host(), 0..3),
            0u32..80000,
            prop::option::of("[a-z]{1,4}: [a-z]{1,6}"),
        )
            .prop_map(|(vs_hosts, gws, rules, gw_hosts, port, selector)| {
                let q = |v: &[String]| {
                    v.iter().map(|h| format!("{h:?}")).collect::<Vec<_>>().join(", ")
                };
                let mut http = String::new();
                for (m, dests) in rules {
                    http.push_str("    - ");
                    if let Some(m) = m {
                        http.push_str(&format!("match: [{{uri: {m}}}]\n      "));
                    }
                    http.push_str("route:\n");
                    for (h, subset, weight) in dests {
                        http.push_str(&format!("        - destination: {{host: {h:?}"));
                        if let Some(s) = subset {
                            http.push_str(&format!(", subset: {s}"));
                        }
                        http.push('}');
                        if let Some(w) = weight {
                            http.push_str(&format!("\n          weight: {w}"));
                        }
                        http.push('\n');
                    }
                }
                format!(
                    "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  selector: {{{}}}\n  servers:\n    - port: {{number: {port}, name: http, protocol: HTTP}}\n      hosts: [{}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs}}\nspec:\n  hosts: [{}]\n  gateways: [{}]\n  http:\n{http}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: dr}}\nspec:\n  host: goapp\n  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v1}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: goapp}}\nspec:\n  selector: {{app: goapp}}\n  ports: [{{port: 8080}}, {{name: grpc, port: 9090}}]\n",
                    selector.unwrap_or_default(),
                    q(&gw_hosts),
                    q(&vs_hosts),
                    gws.join(", ")
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_text_never_panics(text in "[ -~\n]{0,300}") {
            analyze_text(&text);
        }

        #[test]
        fn arbitrary_configs_never_panic(text in config()) {
            let l = load_text(&text, "p.yaml", false, &opts());
            // Either the loader refused something, or every object went through analysis.
            prop_assert!(!l.errors.is_empty() || l.objects.len() == 3, "{:?}", l.errors);
            analyze_text(&text);
        }

        #[test]
        fn mutated_fixtures_never_panic(cut in 0usize..4000, len in 0usize..40, insert in "[ -~\n]{0,20}") {
            let text = std::fs::read_to_string(fixtures().join("ML0110/bad.yaml")).unwrap();
            let start = cut.min(text.len());
            let end = (start + len).min(text.len());
            if text.is_char_boundary(start) && text.is_char_boundary(end) {
                let mutated = format!("{}{}{}", &text[..start], insert, &text[end..]);
                analyze_text(&mutated);
            }
        }
    }
}
