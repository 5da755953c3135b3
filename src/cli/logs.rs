//! `netlab logs POD [-c CONTAINER] [-f] [-p] [--tail N] [--timestamps]
//! [--since 5m | --since-time TIME]`: the container's
//! stdout and stderr, from the lab's API (`pods/NAME/log`, what kubectl
//! reads).

use anyhow::{anyhow, Result};

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// POD or pod/POD.
    pub pod: String,
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep printing new output (until the pod goes away).
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Lines from the end to show (-1: all).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub tail: i64,
    /// The container's run before its last restart.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Each line starts with the time it was written.
    #[arg(long)]
    pub timestamps: bool,
    /// Only what was written in this last while (5s, 2m, 1h30m).
    #[arg(long, value_parser = since_seconds, conflicts_with = "since_time")]
    pub since: Option<i64>,
    /// Only what was written from this time on (RFC 3339).
    #[arg(long)]
    pub since_time: Option<chrono::DateTime<chrono::Utc>>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

/// A Go duration (`1h30m`, `90s`, `500ms`) in whole seconds, rounded up as
/// kubectl rounds it.
fn since_seconds(s: &str) -> Result<i64, String> {
    let d = crate::lab::config::go_duration(s)?;
    if d.is_zero() {
        return Err(format!(
            "{s:?} is not a duration: write it as 30s, 5m or 1h30m"
        ));
    }
    Ok(d.as_secs_f64().ceil() as i64)
}

pub async fn run(args: LogsArgs, lab: Option<String>) -> Result<i32> {
    use futures::AsyncReadExt;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, LogParams};
    use std::io::Write;
    let lab = super::select_lab(lab)?;
    let name = args.pod.strip_prefix("pod/").unwrap_or(&args.pod);
    let client = super::client::Client::connect(&lab).await?;
    let pod = client.pod(&args.namespace, name).await?;
    let containers = &pod.spec.as_ref().expect("spec").containers;
    // As kubectl does: the only container, or the one named.
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
    let params = LogParams {
        container: Some(container),
        follow: args.follow,
        tail_lines: (args.tail >= 0).then_some(args.tail),
        previous: args.previous,
        timestamps: args.timestamps,
        since_seconds: args.since,
        since_time: args.since_time,
        ..Default::default()
    };
    let api: Api<Pod> = Api::namespaced(client.kube(), &args.namespace);
    let stream = api.log_stream(name, &params).await.map_err(|e| match e {
        kube::Error::Api(s) => anyhow!(super::client::ApiFailure {
            code: s.code,
            reason: s.reason,
            message: s.message,
        }),
        e => anyhow!("logs of pod {name}: {e}"),
    })?;
    // The bytes as they come: a line being written shows when it is.
    let mut stream = std::pin::pin!(stream);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(0);
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn since_reads_go_durations_rounded_up_to_seconds() {
        assert_eq!(super::since_seconds("5s"), Ok(5));
        assert_eq!(super::since_seconds("1h30m"), Ok(5400));
        assert_eq!(super::since_seconds("1500ms"), Ok(2));
        for bad in ["", "5", "5x", "0s", "-1s"] {
            assert!(super::since_seconds(bad).is_err(), "{bad}");
        }
    }
}
