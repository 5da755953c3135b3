//! The kubelet's prober decisions for one container, pure: probe results
//! in, actions out. `probes.rs` runs a probe; the controller loop
//! (`daemon.rs`) asks [`ProbeTracker::due`] which to run, feeds the results
//! to [`ProbeTracker::observe`] and carries out what comes back (events, a
//! kill). The rules, as the kubelet's `prober` package has them:
//!
//! - a `startupProbe` runs alone until it succeeds once; liveness and
//!   readiness wait for it (the container is neither live-checked nor ready
//!   meanwhile), and `failureThreshold` consecutive failures kill the
//!   container;
//! - a `livenessProbe` that fails `failureThreshold` times in a row kills
//!   the container, which is then restarted per `restartPolicy` (with the
//!   crash back-off: the restart itself is the controller's ordinary path);
//! - a `readinessProbe` decides readiness after `successThreshold`
//!   successes or `failureThreshold` failures in a row;
//! - every failed result is a `Warning Unhealthy` event
//!   ("Liveness probe failed: …"), and a kill a `Normal Killing` event
//!   ("Container X failed liveness probe, will be restarted");
//! - a restarted container is probed afresh (initialDelaySeconds again).

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, Probe};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    /// In the order the kubelet considers them.
    pub const ALL: [ProbeKind; 3] = [
        ProbeKind::Startup,
        ProbeKind::Liveness,
        ProbeKind::Readiness,
    ];

    pub fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Startup => c.startup_probe.as_ref(),
            ProbeKind::Liveness => c.liveness_probe.as_ref(),
            ProbeKind::Readiness => c.readiness_probe.as_ref(),
        }
    }

    /// As the kubelet's events name it ("Liveness probe failed").
    pub fn label(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What the controller must do after a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A `Warning Unhealthy` event with this message.
    Unhealthy(String),
    /// Kill the container (then restart it per restartPolicy); the message
    /// of the `Normal Killing` event.
    Kill(String),
}

/// Consecutive results of one probe and when it last ran.
#[derive(Debug, Clone, Copy, Default)]
struct Counter {
    successes: i32,
    failures: i32,
    last: Option<Instant>,
}

/// The prober state of one container instance (one start of it).
#[derive(Debug, Clone)]
pub struct ProbeTracker {
    /// The start this state belongs to: a restarted container (same id,
    /// new start) gets a new tracker.
    instance: DateTime<Utc>,
    container: String,
    has_startup: bool,
    has_readiness: bool,
    /// The startup probe has succeeded (or there is none).
    started: bool,
    /// The readiness probe's decision.
    ready: bool,
    /// A kill was asked for: nothing more is probed in this instance.
    killing: bool,
    counters: [Counter; 3],
}

impl ProbeTracker {
    /// A container started at `instance`; `ready` is the readiness the
    /// store holds for it (so a restarted controller keeps it until the
    /// probe decides again).
    pub fn new(c: &Container, instance: DateTime<Utc>, ready: bool) -> ProbeTracker {
        let has_startup = c.startup_probe.is_some();
        ProbeTracker {
            instance,
            container: c.name.clone(),
            has_startup,
            has_readiness: c.readiness_probe.is_some(),
            started: !has_startup,
            ready: ready && !has_startup,
            killing: false,
            counters: [Counter::default(); 3],
        }
    }

    pub fn instance(&self) -> DateTime<Utc> {
        self.instance
    }

    /// Whether the probe of `kind` should run now: the container has been
    /// up `age` (initialDelaySeconds), the period passed since the last
    /// run, and the startup probe gates the others.
    pub fn due(&self, kind: ProbeKind, probe: &Probe, age: Duration, now: Instant) -> bool {
        if self.killing {
            return false;
        }
        let gated = match kind {
            ProbeKind::Startup => self.started,
            ProbeKind::Liveness | ProbeKind::Readiness => !self.started,
        };
        if gated {
            return false;
        }
        let initial = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        if age < initial {
            return false;
        }
        let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        self.counters[kind.index()]
            .last
            .is_none_or(|l| now.saturating_duration_since(l) >= period)
    }

    /// Records one result of the probe of `kind` (Err carries the failure's
    /// message); returns what to do.
    pub fn observe(
        &mut self,
        kind: ProbeKind,
        probe: &Probe,
        result: Result<(), String>,
        now: Instant,
    ) -> Vec<Action> {
        if self.killing {
            return Vec::new(); // a late result of a container being killed
        }
        let counter = &mut self.counters[kind.index()];
        counter.last = Some(now);
        let mut actions = Vec::new();
        match result {
            Ok(()) => {
                counter.successes += 1;
                counter.failures = 0;
                let threshold = probe.success_threshold.unwrap_or(1).max(1);
                if counter.successes >= threshold {
                    match kind {
                        ProbeKind::Startup => self.started = true,
                        ProbeKind::Readiness => self.ready = true,
                        ProbeKind::Liveness => {}
                    }
                }
            }
            Err(message) => {
                counter.failures += 1;
                counter.successes = 0;
                actions.push(Action::Unhealthy(format!(
                    "{} probe failed: {message}",
                    kind.label()
                )));
                let threshold = probe.failure_threshold.unwrap_or(3).max(1);
                if counter.failures >= threshold {
                    match kind {
                        ProbeKind::Readiness => self.ready = false,
                        ProbeKind::Startup | ProbeKind::Liveness => {
                            self.killing = true;
                            self.ready = false;
                            actions.push(Action::Kill(format!(
                                "Container {} failed {} probe, will be restarted",
                                self.container,
                                kind.label().to_lowercase()
                            )));
                        }
                    }
                }
            }
        }
        actions
    }

    /// Whether the startup probe has succeeded (true without one).
    pub fn started(&self) -> bool {
        self.started
    }

    /// The container's readiness as its probes decide it: started, not
    /// being killed, and ready by its readiness probe when it has one.
    pub fn ready(&self) -> bool {
        self.started && !self.killing && (!self.has_readiness || self.ready)
    }

    /// Whether the probes have a say in readiness (else a running
    /// container is ready).
    pub fn decides_readiness(&self) -> bool {
        self.has_readiness || self.has_startup
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(yaml: &str) -> Container {
        serde_yaml_ng::from_str(&format!("name: app\nimage: nginx\n{yaml}")).unwrap()
    }

    /// A step of a scenario: a result of one probe, and what must come out.
    struct Step {
        kind: ProbeKind,
        ok: bool,
        kill: bool,
        started: bool,
        ready: bool,
    }

    fn step(kind: ProbeKind, ok: bool, kill: bool, started: bool, ready: bool) -> Step {
        Step {
            kind,
            ok,
            kill,
            started,
            ready,
        }
    }

    use ProbeKind::{Liveness as L, Readiness as R, Startup as S};

    #[test]
    fn scenarios() {
        let table: Vec<(&str, &str, Vec<Step>)> = vec![
            (
                "liveness kills after failureThreshold consecutive failures",
                "livenessProbe: {tcpSocket: {port: 80}, failureThreshold: 3}\n",
                vec![
                    step(L, false, false, true, true),
                    step(L, true, false, true, true),
                    step(L, false, false, true, true),
                    step(L, false, false, true, true),
                    step(L, false, true, true, false),
                ],
            ),
            (
                "a liveness failure below the threshold leaves readiness alone",
                "livenessProbe: {tcpSocket: {port: 80}, failureThreshold: 2}\nreadinessProbe: {tcpSocket: {port: 80}}\n",
                vec![
                    step(R, true, false, true, true),
                    step(L, false, false, true, true),
                    step(L, false, true, true, false),
                ],
            ),
            (
                "startup gates readiness and kills after its threshold",
                "startupProbe: {httpGet: {port: 80}, failureThreshold: 2}\n",
                vec![
                    step(S, false, false, false, false),
                    step(S, false, true, false, false),
                ],
            ),
            (
                "startup success opens readiness (no readiness probe: ready)",
                "startupProbe: {httpGet: {port: 80}, failureThreshold: 5}\n",
                vec![step(S, false, false, false, false), step(S, true, false, true, true)],
            ),
            (
                "readiness needs successThreshold and failureThreshold in a row",
                "readinessProbe: {tcpSocket: {port: 80}, successThreshold: 2, failureThreshold: 2}\n",
                vec![
                    step(R, true, false, true, false),
                    step(R, true, false, true, true),
                    step(R, false, false, true, true),
                    step(R, true, false, true, true),
                    step(R, false, false, true, true),
                    step(R, false, false, true, false),
                ],
            ),
        ];
        for (name, yaml, steps) in table {
            let c = container(yaml);
            let mut t = ProbeTracker::new(&c, Utc::now(), false);
            let now = Instant::now();
            for (i, s) in steps.iter().enumerate() {
                let probe = s.kind.of(&c).unwrap().clone();
                let result = if s.ok { Ok(()) } else { Err("boom".into()) };
                let actions = t.observe(s.kind, &probe, result, now);
                let unhealthy = format!("{} probe failed: boom", s.kind.label());
                assert_eq!(
                    actions.contains(&Action::Unhealthy(unhealthy)),
                    !s.ok,
                    "{name}: step {i}: {actions:?}"
                );
                let killed = actions.iter().any(|a| matches!(a, Action::Kill(_)));
                assert_eq!(killed, s.kill, "{name}: step {i}: {actions:?}");
                assert_eq!(t.started(), s.started, "{name}: step {i}: started");
                assert_eq!(t.ready(), s.ready, "{name}: step {i}: ready");
            }
        }
    }

    #[test]
    fn kill_messages_are_the_kubelets() {
        let c = container("livenessProbe: {exec: {command: [false]}, failureThreshold: 1}\n");
        let mut t = ProbeTracker::new(&c, Utc::now(), true);
        let p = c.liveness_probe.clone().unwrap();
        let actions = t.observe(L, &p, Err("no".into()), Instant::now());
        assert_eq!(
            actions,
            vec![
                Action::Unhealthy("Liveness probe failed: no".into()),
                Action::Kill("Container app failed liveness probe, will be restarted".into()),
            ]
        );
        // Being killed: nothing is due and late results change nothing.
        assert!(!t.due(L, &p, Duration::from_secs(60), Instant::now()));
        assert!(t
            .observe(L, &p, Err("no".into()), Instant::now())
            .is_empty());

        let c = container("startupProbe: {exec: {command: [false]}, failureThreshold: 1}\n");
        let mut t = ProbeTracker::new(&c, Utc::now(), true);
        let p = c.startup_probe.clone().unwrap();
        let actions = t.observe(S, &p, Err("no".into()), Instant::now());
        assert_eq!(
            actions[1],
            Action::Kill("Container app failed startup probe, will be restarted".into())
        );
    }

    #[test]
    fn due_follows_delay_period_and_the_startup_gate() {
        let c = container(
            "startupProbe: {tcpSocket: {port: 80}, periodSeconds: 2}\nlivenessProbe: {tcpSocket: {port: 80}, initialDelaySeconds: 5, periodSeconds: 3}\n",
        );
        let (sp, lp) = (
            c.startup_probe.clone().unwrap(),
            c.liveness_probe.clone().unwrap(),
        );
        let mut t = ProbeTracker::new(&c, Utc::now(), false);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // (kind, probe, age, seconds after t0, due?)
        let table: &[(ProbeKind, &Probe, u64, u64, bool)] = &[
            (S, &sp, 0, 0, true),
            (L, &lp, 10, 0, false), // gated by the startup probe
        ];
        for (kind, p, age, at, want) in table {
            assert_eq!(
                t.due(*kind, p, s(*age), t0 + s(*at)),
                *want,
                "{kind:?} {age} {at}"
            );
        }
        t.observe(S, &sp, Ok(()), t0);
        let table: &[(ProbeKind, &Probe, u64, u64, bool)] = &[
            (S, &sp, 10, 10, false), // startup is done
            (L, &lp, 4, 0, false),   // initialDelaySeconds
            (L, &lp, 5, 0, true),
        ];
        for (kind, p, age, at, want) in table {
            assert_eq!(
                t.due(*kind, p, s(*age), t0 + s(*at)),
                *want,
                "{kind:?} {age} {at}"
            );
        }
        t.observe(L, &lp, Ok(()), t0);
        assert!(!t.due(L, &lp, s(7), t0 + s(2)), "within the period");
        assert!(t.due(L, &lp, s(8), t0 + s(3)), "a period later");
    }
}
