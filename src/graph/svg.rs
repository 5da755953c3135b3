//! The lab as a standalone SVG: the public network and external host at
//! the top, the Services below it, then the nodes side by side with their
//! pods, on the dc LAN at the bottom. Edges go from each Service to the
//! pods that are its endpoints (dashed: not ready).
//!
//! The layout is a fixed grid computed here (no layout engine): the
//! picture has the same few parts in every lab, and a grid keeps it
//! readable from 2 nodes/10 pods to 10 nodes/200 pods, where a node shows
//! [`super::POD_ROWS`] pods and counts the rest, and at most
//! [`SERVICES_SHOWN`] Services are drawn.

use super::{service_label, Graph};
use std::fmt::Write;

const MARGIN: f64 = 20.0;
const COL: f64 = 320.0; // a node's or a Service's column, with its gap
const BOX: f64 = 300.0;
const LINE: f64 = 16.0;
/// Services drawn; the others are counted (the text forms have them all).
pub const SERVICES_SHOWN: usize = 60;

fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn text(o: &mut String, x: f64, y: f64, class: &str, t: &str) {
    let _ = writeln!(
        o,
        r#"<text x="{x}" y="{y}" class="{class}">{}</text>"#,
        esc(t)
    );
}

pub fn render(g: &Graph) -> String {
    let columns = g.nodes.len().max(2);
    let width = MARGIN * 2.0 + COL * columns as f64 + COL; // + the external host
    let mut body = String::new();
    let mut y = MARGIN + 14.0;
    text(&mut body, MARGIN, y, "title", &format!("lab {}", g.lab));

    // The public network: a bar the nodes and the external host hang on.
    y += 30.0;
    let public_y = y;
    let _ = writeln!(
        body,
        r#"<line x1="{MARGIN}" y1="{public_y}" x2="{}" y2="{public_y}" class="net"/>"#,
        width - MARGIN
    );
    text(&mut body, MARGIN, public_y - 6.0, "small", "public network");
    if let Some(h) = &g.external_host {
        let x = MARGIN + COL * columns as f64;
        let _ = writeln!(
            body,
            r#"<g id="host-external"><line x1="{0}" y1="{public_y}" x2="{0}" y2="{1}" class="net"/><rect x="{x}" y="{1}" width="{BOX}" height="{2}" class="host"/>"#,
            x + BOX / 2.0,
            public_y + 14.0,
            LINE * 2.0 + 10.0
        );
        text(
            &mut body,
            x + 8.0,
            public_y + 14.0 + LINE,
            "bold",
            "external host",
        );
        text(&mut body, x + 8.0, public_y + 14.0 + LINE * 2.0, "small", h);
        body.push_str("</g>\n");
    }

    // Services: a grid of boxes, in rows of `columns`.
    y = public_y + 70.0;
    let shown = &g.services[..g.services.len().min(SERVICES_SHOWN)];
    let mut anchors: Vec<(f64, f64)> = Vec::new(); // each Service's bottom middle
    let mut row_height: f64 = 0.0;
    for (i, v) in shown.iter().enumerate() {
        let col = i % columns;
        if col == 0 && i > 0 {
            y += row_height + 14.0;
            row_height = 0.0;
        }
        let x = MARGIN + COL * col as f64;
        let lines = service_label(v);
        let h = LINE * lines.len() as f64 + 8.0;
        row_height = row_height.max(h);
        let _ = writeln!(
            body,
            r#"<g id="svc-{}-{}"><rect x="{x}" y="{y}" width="{BOX}" height="{h}" rx="10" class="svc"/>"#,
            esc(&v.namespace),
            esc(&v.name)
        );
        for (k, l) in lines.iter().enumerate() {
            let class = if k == 0 { "bold" } else { "small" };
            text(&mut body, x + 10.0, y + LINE * (k + 1) as f64, class, l);
        }
        body.push_str("</g>\n");
        anchors.push((x + BOX / 2.0, y + h));
    }
    if shown.len() < g.services.len() {
        y += row_height + 14.0;
        row_height = LINE;
        text(
            &mut body,
            MARGIN,
            y + LINE,
            "small",
            &format!(
                "… {} more Services (netlab graph -o dot has them all)",
                g.services.len() - shown.len()
            ),
        );
    }
    y += row_height + 60.0;

    // Nodes, side by side, each with its pods.
    let nodes_y = y;
    let mut rows: Vec<(String, f64, f64)> = Vec::new(); // pod key → its row's left middle
    let mut bottom = nodes_y;
    for (i, n) in g.nodes.iter().enumerate() {
        let x = MARGIN + COL * i as f64;
        let (pods, more) = Graph::shown(n);
        let header = 3.0 * LINE + 8.0;
        let h = header + LINE * (pods.len() + usize::from(more > 0)) as f64 + 8.0;
        bottom = bottom.max(nodes_y + h);
        let _ = writeln!(
            body,
            // Its uplink to the public network runs in the gap beside it.
            r#"<g id="node-{}"><polyline points="{1},{public_y} {1},{2} {3},{2}" class="net uplink"/><rect x="{x}" y="{nodes_y}" width="{BOX}" height="{h}" class="node"/>"#,
            esc(&n.name),
            x + BOX + 10.0,
            nodes_y + 20.0,
            x + BOX,
        );
        text(
            &mut body,
            x + 8.0,
            nodes_y + LINE,
            "bold",
            &format!("node {}", n.name),
        );
        text(
            &mut body,
            x + 8.0,
            nodes_y + LINE * 2.0,
            "small",
            &format!("LAN {} · ExternalIP {}", n.internal_ip, n.external_ip),
        );
        text(
            &mut body,
            x + 8.0,
            nodes_y + LINE * 3.0,
            "small",
            &format!("pods {} on {}", n.pod_cidr, n.bridge),
        );
        for (k, p) in pods.iter().enumerate() {
            let py = nodes_y + header + LINE * k as f64;
            let class = if p.ready { "ready" } else { "unready" };
            let _ = writeln!(
                body,
                r#"<g id="pod-{}-{}"><circle cx="{}" cy="{}" r="4" class="{class}"/>"#,
                esc(&p.namespace),
                esc(&p.name),
                x + 14.0,
                py + LINE / 2.0
            );
            text(
                &mut body,
                x + 24.0,
                py + LINE - 4.0,
                "small",
                &format!("{} {}", p.name, p.ip),
            );
            body.push_str("</g>\n");
            // Edges end at the row's right end, where its text is not.
            rows.push((
                format!("{}/{}", p.namespace, p.name),
                x + BOX - 6.0,
                py + LINE / 2.0,
            ));
        }
        if more > 0 {
            let py = nodes_y + header + LINE * pods.len() as f64;
            text(
                &mut body,
                x + 24.0,
                py + LINE - 4.0,
                "small",
                &format!("… {more} more pods"),
            );
        }
        body.push_str("</g>\n");
    }

    // The dc LAN under the nodes.
    let lan_y = bottom + 30.0;
    for i in 0..g.nodes.len() {
        let x = MARGIN + COL * i as f64 + BOX / 2.0;
        let _ = writeln!(
            body,
            r#"<line x1="{x}" y1="{bottom}" x2="{x}" y2="{lan_y}" class="net"/>"#
        );
    }
    let _ = writeln!(
        body,
        r#"<line x1="{MARGIN}" y1="{lan_y}" x2="{}" y2="{lan_y}" class="net"/>"#,
        MARGIN + COL * columns as f64 - 20.0
    );
    text(&mut body, MARGIN, lan_y + LINE, "small", "dc LAN");

    // Service → endpoint pod edges, over everything else.
    let mut edges = String::new();
    for (v, (sx, sy)) in shown.iter().zip(&anchors) {
        for e in &v.endpoints {
            let Some(pod) = &e.pod else { continue };
            let Some((_, px, py)) = rows.iter().find(|(k, _, _)| k == pod) else {
                continue;
            };
            let class = if e.ready { "edge" } else { "edge unready-edge" };
            let _ = writeln!(
                edges,
                r#"<path d="M {sx} {sy} C {sx} {} {} {py} {px} {py}" class="{class}"/><circle cx="{px}" cy="{py}" r="2.5" class="tip"/>"#,
                sy + 60.0,
                px + 40.0
            );
        }
    }

    let height = lan_y + LINE + MARGIN;
    format!(
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="lab {}">
<title>lab {}</title>
<style>
text {{ font-family: sans-serif; fill: #1a202c; }}
.title {{ font-size: 18px; font-weight: bold; }}
.bold {{ font-size: 13px; font-weight: bold; }}
.small {{ font-size: 12px; }}
.net {{ stroke: #718096; stroke-width: 2; fill: none; }}
.tip {{ fill: #2b6cb0; }}
.host {{ fill: #fefcbf; stroke: #975a16; }}
.svc {{ fill: #ebf8ff; stroke: #2b6cb0; }}
.node {{ fill: #f7fafc; stroke: #4a5568; }}
.ready {{ fill: #38a169; }}
.unready {{ fill: #a0aec0; }}
.edge {{ fill: none; stroke: #2b6cb0; stroke-opacity: 0.6; }}
.unready-edge {{ stroke: #a0aec0; stroke-dasharray: 4 3; }}
</style>
<rect width="100%" height="100%" fill="#ffffff"/>
{body}{edges}</svg>
"##,
        esc(&g.lab),
        esc(&g.lab),
    )
}
