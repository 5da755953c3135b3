//! `netlab logs POD [-c CONTAINER] [-f] [--tail N]`: the container's
//! stdout and stderr, kept in the lab's run directory.

use crate::cluster::state;
use crate::controller;
use crate::paths;
use anyhow::{anyhow, Result};
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// POD or pod/POD.
    pub pod: String,
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep printing new output.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Lines from the end to show (-1: all).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub tail: i64,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

pub async fn run(args: LogsArgs, lab: Option<String>) -> Result<i32> {
    let lab = super::select_lab(lab)?;
    let name = args.pod.strip_prefix("pod/").unwrap_or(&args.pod);
    let client = super::client::Client::connect(&lab).await?;
    let pod = &client.pod(&args.namespace, name).await?;
    if crate::cluster::dns::is_builtin(pod) {
        // Its server runs in the controller: show what the controller said of it.
        let log = controller::daemon::log_file(&lab);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("cluster DNS")) {
            println!("{line}");
        }
        return Ok(0);
    }
    let containers = &pod.spec.as_ref().expect("spec").containers;
    let container = match &args.container {
        Some(c) => c.clone(),
        None if containers.len() == 1 => containers[0].name.clone(),
        None => {
            return Err(anyhow!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ))
        }
    };
    let path = paths::container_log(&lab, state::namespace(&pod.metadata), name, &container);
    let mut file = std::fs::File::open(&path).map_err(|e| {
        anyhow!(
            "container {container} in pod {name} has no log ({}): {e}",
            path.display()
        )
    })?;
    // The rotated files first (the controller rotates at 10 MiB).
    let all = crate::runtime::logs::read_all(&path, crate::runtime::logs::DEFAULT)?;
    let text = String::from_utf8_lossy(&all).into_owned();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    out.write_all(tail(&text, args.tail).as_bytes())?;
    out.flush()?;
    drop(out);
    if args.follow {
        let mut pos = file.seek(SeekFrom::End(0))?;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let len = file.metadata()?.len();
            if len < pos {
                pos = 0; // rotated: the file was truncated
            }
            if len > pos {
                file.seek(SeekFrom::Start(pos))?;
                let mut chunk = Vec::new();
                file.read_to_end(&mut chunk)?;
                pos += chunk.len() as u64;
                std::io::stdout().write_all(&chunk)?;
                std::io::stdout().flush()?;
            }
            if !path.exists() {
                return Ok(0);
            }
        }
    }
    Ok(0)
}

fn tail(text: &str, n: i64) -> &str {
    if n < 0 {
        return text;
    }
    let trimmed = text.strip_suffix('\n').unwrap_or(text);
    let mut count = 0;
    for (i, c) in trimmed.char_indices().rev() {
        if c == '\n' {
            count += 1;
            if count == n {
                return &text[i + 1..];
            }
        }
    }
    if n == 0 {
        ""
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tail_lines() {
        assert_eq!(super::tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(super::tail("a\nb\nc\n", -1), "a\nb\nc\n");
        assert_eq!(super::tail("a\nb\nc\n", 5), "a\nb\nc\n");
        assert_eq!(super::tail("a\nb\nc\n", 0), "");
    }
}
