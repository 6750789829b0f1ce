//! Judging an observed traffic split against the configured weights.
//!
//! Each answer is one Bernoulli trial per destination: with `n` answers and an expected share
//! `p`, the count is Binomial(n, p). A destination passes when its count lies within
//! `Z` standard deviations of `n·p` (plus a continuity correction of half a request). With
//! `Z = 3.89` a correct split fails by chance about once in 10,000 checks per destination,
//! while a 90/10 split served 50/50 (or 100/0 with 100 samples) is far outside.

use std::collections::BTreeMap;

use serde::Serialize;

use super::probes::ExpectedShare;

pub const Z: f64 = 3.89;

/// The accepted range of counts for share `p` of `n`.
pub fn bounds(n: u32, p: f64) -> (u32, u32) {
    let nf = n as f64;
    if p <= 0.0 {
        return (0, 0);
    }
    if p >= 1.0 {
        return (n, n);
    }
    let sd = (nf * p * (1.0 - p)).sqrt();
    let slack = Z * sd + 0.5;
    let lo = (nf * p - slack).ceil().max(0.0) as u32;
    let hi = (nf * p + slack).floor().min(nf) as u32;
    (lo, hi)
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ShareResult {
    pub destination: String,
    pub values: Vec<String>,
    pub expected_pct: f64,
    pub observed: u32,
    pub observed_pct: f64,
    /// The accepted range, in percent of the answers.
    pub low_pct: f64,
    pub high_pct: f64,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct SplitResult {
    /// Answers that reached a destination (the basis of the shares).
    pub answers: u32,
    pub header: String,
    pub shares: Vec<ShareResult>,
    /// Header values that match no destination (`(none)` when the header was missing).
    pub unidentified: BTreeMap<String, u32>,
    pub ok: bool,
    pub note: Option<String>,
}

/// Compares the version header values of the routed answers with the expected shares.
pub fn judge(header: &str, expected: &[ExpectedShare], values: &[Option<String>]) -> SplitResult {
    let n = values.len() as u32;
    let (counts, unidentified) = tally(expected, values);
    let pct = |c: u32| {
        if n == 0 {
            0.0
        } else {
            c as f64 * 100.0 / n as f64
        }
    };
    let shares: Vec<ShareResult> = expected
        .iter()
        .zip(&counts)
        .map(|(e, &c)| {
            let (lo, hi) = bounds(n, e.share);
            ShareResult {
                destination: e.destination.clone(),
                values: e.values.clone(),
                expected_pct: e.share * 100.0,
                observed: c,
                observed_pct: pct(c),
                low_pct: pct(lo),
                high_pct: pct(hi),
                ok: (lo..=hi).contains(&c),
            }
        })
        .collect();
    let identified: u32 = counts.iter().sum();
    let (ok, note) = verdict(header, expected, &shares, &unidentified, n, identified);
    SplitResult {
        answers: n,
        header: header.to_string(),
        shares,
        unidentified,
        ok,
        note,
    }
}

/// How many answers each expected destination got, and the header values of the others.
fn tally(
    expected: &[ExpectedShare],
    values: &[Option<String>],
) -> (Vec<u32>, BTreeMap<String, u32>) {
    let mut counts = vec![0u32; expected.len()];
    let mut unidentified: BTreeMap<String, u32> = BTreeMap::new();
    for v in values {
        let hit = v.as_ref().and_then(|v| {
            expected
                .iter()
                .position(|e| e.values.iter().any(|x| x.eq_ignore_ascii_case(v.trim())))
        });
        match hit {
            Some(i) => counts[i] += 1,
            None => {
                *unidentified
                    .entry(v.clone().unwrap_or_else(|| "(none)".into()))
                    .or_default() += 1
            }
        }
    }
    (counts, unidentified)
}

/// Whether the split holds, and why not (or why it cannot be observed).
fn verdict(
    header: &str,
    expected: &[ExpectedShare],
    shares: &[ShareResult],
    unidentified: &BTreeMap<String, u32>,
    n: u32,
    identified: u32,
) -> (bool, Option<String>) {
    if n == 0 {
        return (false, Some("no answer reached a destination".to_string()));
    }
    if identified == 0 {
        let names: Vec<String> = expected
            .iter()
            .flat_map(|e| e.values.iter().cloned())
            .collect();
        return (
            true,
            Some(format!(
                "the answers carry no {header} header that names a destination (expected one of: {}), so the split cannot be observed; set verify.version_header",
                names.join(", ")
            )),
        );
    }
    if !unidentified.is_empty() {
        let seen: Vec<String> = unidentified
            .iter()
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect();
        return (
            false,
            Some(format!(
                "{} answers came from no configured destination ({header}: {})",
                n - identified,
                seen.join(", ")
            )),
        );
    }
    (shares.iter().all(|s| s.ok), None)
}

impl SplitResult {
    /// `v1 91% (expected 90%, 78–100%), v2 9% (expected 10%, 0–22%)`.
    pub fn describe(&self) -> String {
        self.shares
            .iter()
            .map(|s| {
                format!(
                    "{} {:.0}% (expected {:.0}%, accepted {:.0}–{:.0}%){}",
                    s.destination,
                    s.observed_pct,
                    s.expected_pct,
                    s.low_pct,
                    s.high_pct,
                    if s.ok { "" } else { " OFF" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(name: &str, p: f64) -> ExpectedShare {
        ExpectedShare {
            destination: name.into(),
            share: p,
            values: vec![name.into()],
            fqdn: String::new(),
            subset: None,
        }
    }

    fn answers(v1: usize, v2: usize) -> Vec<Option<String>> {
        std::iter::repeat_n(Some("v1".to_string()), v1)
            .chain(std::iter::repeat_n(Some("v2".to_string()), v2))
            .collect()
    }

    #[test]
    fn bounds_are_symmetric_and_clamped() {
        assert_eq!(bounds(100, 0.0), (0, 0));
        assert_eq!(bounds(100, 1.0), (100, 100));
        let (lo, hi) = bounds(100, 0.1);
        assert_eq!(lo, 0);
        assert!((20..=23).contains(&hi), "{hi}");
        let (lo, hi) = bounds(100, 0.5);
        assert!(lo > 25 && lo < 35 && hi > 65 && hi < 75, "{lo} {hi}");
    }

    #[test]
    fn a_ninety_ten_split_passes_and_fifty_fifty_fails() {
        let exp = [share("v1", 0.9), share("v2", 0.1)];
        assert!(judge("x-version", &exp, &answers(88, 12)).ok);
        assert!(judge("x-version", &exp, &answers(100, 0)).ok);
        let off = judge("x-version", &exp, &answers(50, 50));
        assert!(!off.ok);
        assert!(
            off.describe().contains("v1 50% (expected 90%"),
            "{}",
            off.describe()
        );
    }

    #[test]
    fn unknown_versions_fail_and_missing_headers_are_noted() {
        let exp = [share("v1", 0.5), share("v2", 0.5)];
        let mut a = answers(45, 45);
        a.extend(std::iter::repeat_n(Some("v3".to_string()), 10));
        let r = judge("x-version", &exp, &a);
        assert!(!r.ok);
        assert_eq!(r.unidentified.get("v3"), Some(&10));
        let none = judge("x-version", &exp, &[None, None, None]);
        assert!(none.ok);
        assert!(none.note.unwrap().contains("cannot be observed"));
    }
}
