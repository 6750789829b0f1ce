//! Draws a [`HostGraph`] as SVG: one column per kind of node, left to right, each subtree on
//! rows of its own and each parent centred on its children; edges as curves.
//!
//! Text in SVG does not wrap, so each detail is wrapped here into short lines and shortened
//! with an ellipsis; the node's full text is its `<title>` (the browser's tooltip). Every
//! string goes through maud, which escapes it.

use maud::{Markup, html};

use super::graph::{HostGraph, Kind, Mark, Node};

const COLUMN: f64 = 230.0;
const GAP: f64 = 34.0;
const WIDTH: f64 = COLUMN - GAP;
const LINE: f64 = 13.0;
/// Title, three detail lines and the location.
const HEIGHT: f64 = 14.0 + 4.0 * LINE + 14.0;
const ROW: f64 = HEIGHT + 12.0;
const MARGIN: f64 = 4.0;
/// Characters that fit a node's width at the page's font sizes (the title is bold).
const CHARS: usize = 30;
const TITLE_CHARS: usize = 26;
const DETAIL_LINES: usize = 3;
/// The location is in a monospace font a little wider than the text's.
const AT_CHARS: usize = 28;

/// The top of each node (its column gives the left).
fn layout(g: &HostGraph) -> Vec<f64> {
    let mut y = vec![f64::NAN; g.nodes.len()];
    let mut next_row = 0usize;
    for &vs in &g.virtual_services {
        place(g, vs, &mut y, &mut next_row);
    }
    // Gateways: centred on the VirtualServices they lead to, then pushed apart.
    let mut gws: Vec<(usize, f64)> = g
        .gateways
        .iter()
        .map(|&i| {
            let ys: Vec<f64> = g.nodes[i].children.iter().map(|&c| y[c]).collect();
            (i, ys.iter().sum::<f64>() / ys.len().max(1) as f64)
        })
        .collect();
    gws.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut floor = 0.0f64;
    for (i, want) in gws {
        y[i] = want.max(floor);
        floor = y[i] + ROW;
    }
    y
}

fn place(g: &HostGraph, i: usize, y: &mut [f64], next_row: &mut usize) -> f64 {
    if !y[i].is_nan() {
        return y[i];
    }
    let children = &g.nodes[i].children;
    y[i] = if children.is_empty() {
        *next_row += 1;
        (*next_row - 1) as f64 * ROW
    } else {
        let ys: Vec<f64> = children.iter().map(|&c| place(g, c, y, next_row)).collect();
        (ys[0] + ys[ys.len() - 1]) / 2.0
    };
    y[i]
}

/// Words into at most `max` lines of [`CHARS`], the last shortened with an ellipsis.
fn wrap(text: &str, max: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > CHARS {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    let more = lines.len() > max;
    lines.truncate(max);
    for (n, l) in lines.iter_mut().enumerate() {
        if l.chars().count() > CHARS || (more && n + 1 == max) {
            *l = shorten(l, CHARS - 1);
            l.push('…');
        }
    }
    lines
}

fn shorten(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// A location keeps its end (`…/templates/routing.yaml:12:7`), which says the most.
fn shorten_left(s: &str) -> String {
    let n = s.chars().count();
    if n <= AT_CHARS {
        return s.to_string();
    }
    let tail: String = s.chars().skip(n - (AT_CHARS - 1)).collect();
    format!("…{tail}")
}

fn tooltip(n: &Node) -> String {
    let mut parts = vec![n.title.clone()];
    parts.extend(n.lines.iter().cloned());
    parts.extend(n.note.iter().cloned());
    parts.extend(n.at.iter().cloned());
    parts.join("\n")
}

pub fn draw(g: &HostGraph) -> Markup {
    let y = layout(g);
    let x = |n: &Node| MARGIN + n.kind.column() as f64 * COLUMN;
    let columns = g
        .nodes
        .iter()
        .map(|n| n.kind.column() + 1)
        .max()
        .unwrap_or(1);
    let width = 2.0 * MARGIN + columns as f64 * COLUMN - GAP;
    let height = 2.0 * MARGIN + y.iter().cloned().fold(0.0, f64::max) + HEIGHT;
    html! {
        svg class="graph" xmlns="http://www.w3.org/2000/svg" role="img"
            viewBox=(format!("0 0 {width} {height}")) width=(width) height=(height)
            aria-label=(format!("routing of {}", g.host)) {
            @for (i, n) in g.nodes.iter().enumerate() {
                @for &c in &n.children {
                    (edge(x(n), y[i] + MARGIN, x(&g.nodes[c]), y[c] + MARGIN, g.nodes[c].mark))
                }
            }
            @for (i, n) in g.nodes.iter().enumerate() {
                (node(n, x(n), y[i] + MARGIN))
            }
        }
    }
}

fn edge(x1: f64, y1: f64, x2: f64, y2: f64, to: Mark) -> Markup {
    let (sx, sy) = (x1 + WIDTH, y1 + HEIGHT / 2.0);
    let (ex, ey) = (x2, y2 + HEIGHT / 2.0);
    let mid = (sx + ex) / 2.0;
    let d = format!("M{sx} {sy} C{mid} {sy} {mid} {ey} {ex} {ey}");
    html! { path class={ "edge " (to.as_str()) } d=(d) {} }
}

fn node(n: &Node, x: f64, y: f64) -> Markup {
    let detail = wrap(&n.lines.join(" · "), DETAIL_LINES);
    let title = if n.title.chars().count() > TITLE_CHARS {
        format!("{}…", shorten(&n.title, TITLE_CHARS - 1))
    } else {
        n.title.clone()
    };
    let badge = match (n.kind, n.mark) {
        (_, Mark::Broken) => "✗ ",
        (Kind::Rule | Kind::Destination | Kind::Pods, Mark::Ok) => "✓ ",
        (_, Mark::Warn) => "! ",
        _ => "",
    };
    html! {
        g class={ "node " (n.kind.as_str()) " " (n.mark.as_str()) }
            data-kind=(n.kind.as_str()) data-mark=(n.mark.as_str())
            data-at=[n.at.as_deref()] data-key=[n.key.as_deref()]
            transform=(format!("translate({x} {y})")) {
            title { (tooltip(n)) }
            rect width=(WIDTH) height=(HEIGHT) rx="6" {}
            text class="title" x="8" y="16" { (badge) (title) }
            @for (k, l) in detail.iter().enumerate() {
                text class="detail" x="8" y=(16.0 + (k + 1) as f64 * LINE + 2.0) { (l) }
            }
            @if let Some(at) = &n.at {
                text class="at" x="8" y=(HEIGHT - 8.0) { (shorten_left(at)) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_wraps_and_ends_with_an_ellipsis() {
        let w = wrap(
            "subset v1 of DestinationRule dev/goapp selects version=v1 and a great deal more than fits in three lines of a node",
            3,
        );
        assert_eq!(w.len(), 3);
        assert!(w.iter().all(|l| l.chars().count() <= CHARS), "{w:?}");
        assert!(w[2].ends_with('…'), "{w:?}");
        assert_eq!(wrap("short", 3), ["short"]);
        assert_eq!(
            shorten_left("charts/goapp/templates/virtualservice.yaml:12:7"),
            "…es/virtualservice.yaml:12:7"
        );
    }
}
