//! `netlab ui`: a link to the lab's page ([`crate::ui`]), which the lab's
//! process serves on the host's loopback. The link carries a one-time
//! token from the lab's API (asked as its admin), so only whoever can read
//! the lab's admin credentials (root) can open the page.

use anyhow::{Context, Result};

#[derive(Debug, clap::Args)]
pub struct UiArgs {}

pub async fn run(_args: UiArgs, lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let client = super::client::Client::connect(&lab).await?;
    let answer = client
        .request(
            http::Method::POST,
            crate::ui::TOKEN_PATH,
            None,
            super::client::JSON,
            Vec::new(),
        )
        .await?;
    let url = answer["url"]
        .as_str()
        .context("the lab's process gave no link to its page")?;
    println!("{url}");
    eprintln!(
        "Open it in a browser on this machine: it works once, within {} minutes (`netlab ui --lab {lab}` gives another). \
         From another machine: ssh -L {port}:127.0.0.1:{port} this-host, then the same link.",
        crate::ui::TOKEN_LIFE.as_secs() / 60,
        port = url
            .trim_start_matches("http://")
            .split(['/', ':'])
            .nth(1)
            .unwrap_or("PORT"),
    );
    Ok(0)
}
