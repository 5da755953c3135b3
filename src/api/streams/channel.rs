//! The channel protocol of `v4.channel.k8s.io` and `v5.channel.k8s.io`
//! (client-go's `remotecommand`, kubelet's `wsstream`), pure: every
//! WebSocket message is one binary frame whose first byte names the
//! stream. 0 stdin, 1 stdout, 2 stderr, 3 error (one Status, when the
//! command has ended), 4 resize (`{"Width":W,"Height":H}`); v5 adds 255
//! close (`ff 00`: the client closed stdin).

use serde_json::{json, Value};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
pub const CLOSE: u8 = 255;

/// The subprotocols served, most preferred first. kubectl 1.30+ offers
/// only v5; kube-rs offers v5 then v4. The older `channel.k8s.io` and the
/// base64 variants carry no exit code and no stdin close, and no client
/// here needs them.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// What a client's frame asks for.
#[derive(Debug, PartialEq)]
pub enum FromClient<'a> {
    Stdin(&'a [u8]),
    Resize {
        width: u16,
        height: u16,
    },
    /// v5: the client will send no more on stdin.
    CloseStdin,
    /// Empty frames, unknown channels, a close of another channel.
    Nothing,
}

pub fn parse(frame: &[u8]) -> FromClient<'_> {
    match frame {
        [STDIN, data @ ..] => FromClient::Stdin(data),
        [RESIZE, data @ ..] => match serde_json::from_slice::<Value>(data) {
            Ok(v) => {
                let dim = |k: &str| v[k].as_u64().map(|n| n.min(u16::MAX as u64) as u16);
                match (dim("Width"), dim("Height")) {
                    (Some(width), Some(height)) => FromClient::Resize { width, height },
                    _ => FromClient::Nothing,
                }
            }
            Err(_) => FromClient::Nothing,
        },
        [CLOSE, STDIN, ..] => FromClient::CloseStdin,
        _ => FromClient::Nothing,
    }
}

/// One frame to the client.
pub fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(channel);
    out.extend_from_slice(data);
    out
}

/// The Status the kubelet ends a stream with: Success, or the exit code
/// as a cause kubectl turns into its own exit code ("command terminated
/// with exit code N").
pub fn exit_status(code: i32, command: &[String]) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The Status of a stream that could not run at all (kubectl prints the
/// message and exits 1).
pub fn failure(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "code": 500,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames() {
        assert_eq!(parse(b"\x00hi"), FromClient::Stdin(b"hi"));
        assert_eq!(
            parse(b"\x04{\"Width\":120,\"Height\":40}"),
            FromClient::Resize {
                width: 120,
                height: 40
            }
        );
        assert_eq!(parse(b"\x04{\"Width\":1}"), FromClient::Nothing);
        assert_eq!(parse(&[255, 0]), FromClient::CloseStdin);
        assert_eq!(parse(&[255, 1]), FromClient::Nothing);
        assert_eq!(parse(&[]), FromClient::Nothing);
        assert_eq!(frame(STDOUT, b"x"), vec![1, b'x']);
    }

    #[test]
    fn exit_statuses_as_the_kubelet_sends_them() {
        assert_eq!(exit_status(0, &[])["status"], "Success");
        let s = exit_status(3, &["sh".into(), "-c".into(), "exit 3".into()]);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert!(s["message"].as_str().unwrap().contains("[sh -c exit 3]"));
    }
}
