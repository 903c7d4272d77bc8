//! The chart next to the JSON (`--json out.json` also writes `out.svg`): one row per
//! measured number that has something to be held against (a peer, a limit) or is a
//! headline throughput, with Sluice's bar beside the peer's and the limit's, each row
//! scaled to its own largest value and labelled with the numbers.

use std::fmt::Write as _;
use std::path::Path;

use crate::report::Record;

const WIDTH: f64 = 980.0;
const LABEL_W: f64 = 360.0;
const BAR_W: f64 = 460.0;
const BAR_H: f64 = 12.0;
const ROW_GAP: f64 = 10.0;

/// Sluice, peer, limit: (legend, colour).
const SERIES: [(&str, &str); 3] = [
    ("Sluice", "#1f77b4"),
    ("peer", "#ff7f0e"),
    ("limit", "#7f7f7f"),
];

/// Whether a record earns a row: compared with something, or a headline rate.
fn charted(r: &Record) -> bool {
    r.peer.is_some() || r.limit.is_some() || matches!(r.metric, "push" | "fetch")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG document for `records` (an empty chart says so).
pub fn svg(title: &str, records: &[Record]) -> String {
    let rows: Vec<&Record> = records.iter().filter(|r| charted(r)).collect();
    let row_h = |r: &Record| {
        let bars = 1 + r.peer.is_some() as usize + r.limit.is_some() as usize;
        bars as f64 * BAR_H + ROW_GAP
    };
    let height = 60.0 + rows.iter().map(|r| row_h(r)).sum::<f64>() + 20.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="10" y="20" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (i, (name, colour)) in SERIES.iter().enumerate() {
        let x = 10.0 + i as f64 * 90.0;
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="30" width="10" height="10" fill="{colour}"/><text x="{}" y="39">{name}</text>"#,
            x + 14.0
        );
    }
    if rows.is_empty() {
        let _ = writeln!(out, r#"<text x="10" y="70">no comparable results</text>"#);
    }
    let mut y = 55.0;
    for r in rows {
        let values = [Some(r.value), r.peer, r.limit];
        let max = values.iter().flatten().fold(0.0f64, |a, &b| a.max(b));
        let label = format!("{} · {} · {}", r.mode, r.case, r.metric);
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LABEL_W - 8.0,
            y + BAR_H - 2.0,
            escape(&label)
        );
        let mut bar_y = y;
        for (value, (_, colour)) in values.iter().zip(SERIES) {
            let Some(v) = value else { continue };
            let w = if max > 0.0 { v / max * BAR_W } else { 0.0 };
            let _ = writeln!(
                out,
                r#"<rect x="{LABEL_W}" y="{bar_y}" width="{w:.1}" height="{}" fill="{colour}"/><text x="{:.1}" y="{}">{} {}</text>"#,
                BAR_H - 2.0,
                LABEL_W + w + 4.0,
                bar_y + BAR_H - 3.0,
                number(*v),
                escape(r.unit)
            );
            bar_y += BAR_H;
        }
        y += row_h(r);
    }
    out.push_str("</svg>\n");
    out
}

fn number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Writes the chart next to the JSON file: `out.json` -> `out.svg`.
pub fn write_next_to(json: &Path, title: &str, records: &[Record]) -> std::io::Result<()> {
    std::fs::write(json.with_extension("svg"), svg(title, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_ours_beside_peer_and_limit_and_skip_the_rest() {
        let records = vec![
            Record::new("split", "P=200", "throughput", 1.5, "GB/s")
                .with_peer(0.5)
                .with_limit(6.0),
            Record::new("e2e", "8 maps", "push", 0.4, "GB/s"),
            Record::new("e2e", "8 maps", "peak_rss", 1500.0, "MiB"),
        ];
        let svg = svg("results <1>", &records);
        assert!(svg.contains("results &lt;1&gt;"));
        assert!(svg.contains("split · P=200 · throughput"));
        assert!(svg.contains("e2e · 8 maps · push"));
        assert!(!svg.contains("peak_rss"));
        // The limit is the row's longest bar; ours and the peer's scale to it.
        assert!(svg.contains(r#"width="460.0""#));
        assert!(svg.contains(r#"width="115.0""#));
        assert!(svg.contains(">1.500 GB/s<"));
        assert!(svg.contains(">0.500 GB/s<"));
        assert_eq!(svg.matches("<rect x=\"360\"").count(), 4);
    }
}
