//! Container logs in the CRI format, as containerd writes them for the
//! kubelet: one record per line of output,
//!
//! ```text
//! 2026-12-04T19:57:03.123456789Z stdout F the line's text
//! ```
//!
//! with the time it was read (UTC, nanoseconds), the stream it came from
//! and a tag: `F` for a whole line, `P` for a piece of a longer one (a
//! line is cut every [`MAX_LINE`] bytes, as containerd cuts it). That is
//! what lets `kubectl logs --timestamps`, `--since` and `--since-time`
//! work. [`Writer`] makes records of a stream's bytes; [`Reader`] turns
//! records back into the text a client asked for. A line that is not a
//! record (a log written before netlab kept this format) is passed on as
//! it is, with no time.

use std::io::{self, Write};

/// The longest piece of a line one record holds (containerd's 16 KiB).
pub const MAX_LINE: usize = 16 * 1024;

/// The stored time format: fixed width, so that two times compare as strings.
const STORED: &str = "%Y-%m-%dT%H:%M:%S%.9fZ";

/// A time as records store it.
pub fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format(STORED).to_string()
}

/// Makes records of one stream's bytes and appends them to a log.
pub struct Writer<W: Write> {
    out: W,
    stream: &'static str,
    /// A terminal ends its lines with `\r\n`: the `\r` is not kept.
    terminal: bool,
    /// The start of a line not yet ended.
    pending: Vec<u8>,
}

impl<W: Write> Writer<W> {
    /// `stream` is `stdout` or `stderr`.
    pub fn new(out: W, stream: &'static str, terminal: bool) -> Writer<W> {
        Writer {
            out,
            stream,
            terminal,
            pending: Vec::new(),
        }
    }

    /// Records the whole lines `chunk` ends (and pieces of any line longer
    /// than [`MAX_LINE`]), all stamped `now`, in one write.
    pub fn write(&mut self, chunk: &[u8], now: &str) -> io::Result<()> {
        let mut out = Vec::with_capacity(chunk.len() + 64);
        let mut rest = chunk;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            let (line, after) = rest.split_at(i);
            if self.pending.is_empty() {
                self.record(&mut out, now, line, false);
            } else {
                let mut whole = std::mem::take(&mut self.pending);
                whole.extend_from_slice(line);
                self.record(&mut out, now, &whole, false);
            }
            rest = &after[1..];
        }
        self.pending.extend_from_slice(rest);
        while self.pending.len() >= MAX_LINE {
            let piece: Vec<u8> = self.pending.drain(..MAX_LINE).collect();
            self.record(&mut out, now, &piece, true);
        }
        if out.is_empty() {
            return Ok(());
        }
        let done = self.out.write_all(&out);
        super::logs::wrote();
        done
    }

    /// The stream ended: a line it did not end is recorded whole.
    pub fn finish(&mut self, now: &str) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        let line = std::mem::take(&mut self.pending);
        self.record(&mut out, now, &line, false);
        let done = self.out.write_all(&out);
        super::logs::wrote();
        done
    }

    fn record(&self, out: &mut Vec<u8>, now: &str, line: &[u8], partial: bool) {
        let mut line = match (self.terminal && !partial, line.strip_suffix(b"\r")) {
            (true, Some(l)) => l,
            _ => line,
        };
        // A line longer than a record holds: pieces, then its end.
        while line.len() > MAX_LINE {
            let (piece, rest) = line.split_at(MAX_LINE);
            self.one(out, now, piece, true);
            line = rest;
        }
        self.one(out, now, line, partial);
    }

    fn one(&self, out: &mut Vec<u8>, now: &str, line: &[u8], partial: bool) {
        out.extend_from_slice(now.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.stream.as_bytes());
        out.extend_from_slice(if partial { b" P " } else { b" F " });
        out.extend_from_slice(line);
        out.push(b'\n');
    }
}

impl<W: Write> Drop for Writer<W> {
    fn drop(&mut self) {
        let _ = self.finish(&stamp(chrono::Utc::now()));
    }
}

/// One line of a log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// When it was read; `None` for a line that is not a record.
    pub time: Option<&'a str>,
    pub partial: bool,
    pub text: &'a [u8],
}

/// Reads one line of a log file (without its `\n`).
pub fn parse(line: &[u8]) -> Record<'_> {
    let plain = Record {
        time: None,
        partial: false,
        text: line,
    };
    let mut parts = line.splitn(4, |b| *b == b' ');
    let (Some(time), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return plain;
    };
    let looks_like_time =
        time.len() >= 20 && time[0].is_ascii_digit() && time.get(10) == Some(&b'T');
    let partial = match tag {
        b"F" => false,
        b"P" => true,
        _ => return plain,
    };
    if !looks_like_time || !(stream == b"stdout" || stream == b"stderr") {
        return plain;
    }
    match std::str::from_utf8(time) {
        Ok(time) => Record {
            time: Some(time),
            partial,
            text: parts.next().unwrap_or_default(),
        },
        Err(_) => plain,
    }
}

/// A stored time as the kubelet prints it for `--timestamps` (Go's
/// RFC3339Nano: the fraction without its trailing zeros).
pub fn shown(time: &str) -> String {
    let Some(body) = time.strip_suffix('Z') else {
        return time.to_string();
    };
    if !body.contains('.') {
        return time.to_string();
    }
    let trimmed = body.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed}Z")
}

/// What a client asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Each line starts with the time it was read (`--timestamps`).
    pub timestamps: bool,
    /// Only what was read at or after this stored time (`--since`,
    /// `--since-time`).
    pub since: Option<String>,
}

/// Turns records back into text, line after line, as they come (a
/// followed log arrives in pieces that need not end at a line's end).
#[derive(Debug, Default)]
pub struct Reader {
    options: Options,
    /// The start of a line of the file not yet read whole.
    pending: Vec<u8>,
}

impl Reader {
    pub fn new(options: Options) -> Reader {
        Reader {
            options,
            pending: Vec::new(),
        }
    }

    /// The text of the lines `chunk` completes.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut rest = chunk;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            let (line, after) = rest.split_at(i);
            if self.pending.is_empty() {
                self.line(line, out);
            } else {
                let mut whole = std::mem::take(&mut self.pending);
                whole.extend_from_slice(line);
                self.line(&whole, out);
            }
            rest = &after[1..];
        }
        self.pending.extend_from_slice(rest);
    }

    /// The rest, once nothing more comes.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.line(&line, out);
        }
    }

    fn line(&self, line: &[u8], out: &mut Vec<u8>) {
        let r = parse(line);
        if let (Some(since), Some(time)) = (&self.options.since, r.time) {
            if time < since.as_str() {
                return;
            }
        }
        if let (true, Some(time)) = (self.options.timestamps, r.time) {
            out.extend_from_slice(shown(time).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(r.text);
        if !r.partial {
            out.push(b'\n');
        }
    }
}

/// The text of a whole log: its last `tail` records (all when negative),
/// as `options` asks.
pub fn render(log: &[u8], tail: i64, options: Options) -> Vec<u8> {
    let mut out = Vec::with_capacity(log.len());
    let mut reader = Reader::new(options);
    reader.feed(super::logs::last_lines(log, tail), &mut out);
    reader.finish(&mut out);
    out
}

/// The text of a log file as a person reads it (no times), empty when it
/// cannot be read.
pub fn text(log: &std::path::Path) -> String {
    let raw = std::fs::read(log).unwrap_or_default();
    String::from_utf8_lossy(&render(&raw, -1, Options::default())).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "2026-12-04T19:57:03.120000000Z";

    fn written(chunks: &[&[u8]], terminal: bool) -> String {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out, "stdout", terminal);
        for c in chunks {
            w.write(c, T).unwrap();
        }
        w.finish(T).unwrap();
        drop(w);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_become_records_whatever_the_chunks() {
        let want = format!("{T} stdout F hello world\n{T} stdout F second\n");
        assert_eq!(written(&[b"hello world\nsecond\n"], false), want);
        assert_eq!(written(&[b"hel", b"lo world\nsec", b"ond\n"], false), want);
        // Not ended by the stream: recorded whole when it ends.
        assert_eq!(written(&[b"hello world\nsecond"], false), want);
        assert_eq!(written(&[b"a\r\n"], true), format!("{T} stdout F a\n"));
        assert_eq!(written(&[b"a\r\n"], false), format!("{T} stdout F a\r\n"));
        assert_eq!(written(&[b"\n"], false), format!("{T} stdout F \n"));
    }

    #[test]
    fn a_long_line_is_cut_into_partial_records_and_read_back_whole() {
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let mut chunk = long.clone();
        chunk.push(b'\n');
        let log = written(&[&chunk], false);
        let tags: Vec<&str> = log.lines().map(|l| &l[T.len() + 8..T.len() + 9]).collect();
        assert_eq!(tags, ["P", "P", "F"]);
        let text = render(log.as_bytes(), -1, Options::default());
        assert_eq!(text.len(), long.len() + 1);
        assert!(text.ends_with(b"x\n"));
    }

    #[test]
    fn records_read_back_as_the_client_asks() {
        let log = "2026-12-04T10:00:00.000000000Z stdout F one\n\
             2026-12-04T10:00:01.500000000Z stderr F two\n\
             not a record\n\
             2026-12-04T10:00:02.000000001Z stdout F three\n";
        let r = |tail, o| String::from_utf8(render(log.as_bytes(), tail, o)).unwrap();
        assert_eq!(r(-1, Options::default()), "one\ntwo\nnot a record\nthree\n");
        assert_eq!(r(2, Options::default()), "not a record\nthree\n");
        let ts = Options {
            timestamps: true,
            since: None,
        };
        assert_eq!(
            r(-1, ts),
            "2026-12-04T10:00:00Z one\n2026-12-04T10:00:01.5Z two\nnot a record\n\
             2026-12-04T10:00:02.000000001Z three\n"
        );
        let since = Options {
            timestamps: false,
            since: Some("2026-12-04T10:00:01.000000000Z".into()),
        };
        assert_eq!(r(-1, since), "two\nnot a record\nthree\n");
    }

    #[test]
    fn a_followed_log_is_read_in_any_pieces() {
        let log = format!("{T} stdout F one\n{T} stdout P tw\n{T} stdout F o\n");
        let mut out = Vec::new();
        let mut reader = Reader::new(Options::default());
        for piece in log.as_bytes().chunks(7) {
            reader.feed(piece, &mut out);
        }
        reader.finish(&mut out);
        assert_eq!(out, b"one\ntwo\n");
    }

    #[test]
    fn only_well_formed_records_are_taken_apart() {
        assert_eq!(parse(b"hello there you all").time, None);
        assert_eq!(parse(b"2026-12-04T10:00:00Z stdin F x").time, None);
        assert_eq!(parse(b"2026-12-04T10:00:00Z stdout X x").time, None);
        let r = parse(b"2026-12-04T10:00:00Z stdout F");
        assert_eq!((r.time.is_some(), r.text), (true, &b""[..]));
    }
}
