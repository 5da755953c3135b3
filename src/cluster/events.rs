//! Events, as the kubelet and controllers record them (`kubectl get events`,
//! the Events section of `describe`). The store keeps the most recent ones;
//! a repeat of the same reason on the same object bumps its count.

use super::state::{namespace, time, ClusterState};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// How many events a lab keeps.
pub const KEEP: usize = 500;

/// How often a failure a controller meets at each pass is recorded again.
pub const FAILURE_REPEAT: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// The object an event is about: kind, namespace, name.
#[derive(Debug, Clone)]
pub struct Involved<'a> {
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl ClusterState {
    /// The kubelet's two events for a container it (re)started.
    pub fn record_started(&mut self, pod: Involved<'_>, container: &str, now: DateTime<Utc>) {
        self.record(
            pod.clone(),
            "Normal",
            "Created",
            "kubelet",
            format!("Created container {container}"),
            now,
        );
        self.record(
            pod,
            "Normal",
            "Started",
            "kubelet",
            format!("Started container {container}"),
            now,
        );
    }

    /// A controller's failure that it meets again at each pass (a
    /// ReplicaSet whose pods are refused): recorded as a Warning, but a
    /// repeat of it at most once per [`FAILURE_REPEAT`], as client-go's
    /// event correlator spaces repeats. Whether it recorded.
    pub fn record_failure(
        &mut self,
        object: Involved<'_>,
        reason: &str,
        component: &str,
        message: String,
        now: DateTime<Utc>,
    ) -> bool {
        let recent = self.events.iter().rev().any(|e| {
            same_event(e, &object, reason, &message)
                && e.last_timestamp
                    .as_ref()
                    .is_some_and(|t| now - t.0 < FAILURE_REPEAT)
        });
        if !recent {
            self.record(object, "Warning", reason, component, message, now);
        }
        !recent
    }

    pub fn record(
        &mut self,
        object: Involved<'_>,
        type_: &str,
        reason: &str,
        component: &str,
        message: impl Into<String>,
        now: DateTime<Utc>,
    ) {
        let message = message.into();
        if let Some(mut e) = self
            .events
            .iter_mut()
            .rev()
            .find(|e| same_event(e, &object, reason, &message))
        {
            e.count = Some(e.count.unwrap_or(1) + 1);
            e.last_timestamp = Some(time(now));
            return;
        }
        // client-go's name: the object's, then the time in nanoseconds in
        // hex. The events of one step share `now`: a later one takes the
        // next nanosecond (the store keeps one object per name).
        let mut stamp = now.timestamp_nanos_opt().unwrap_or_default();
        let name = loop {
            let name = format!("{}.{stamp:x}", object.name);
            if !self
                .events
                .iter()
                .any(|e| e.metadata.name.as_ref() == Some(&name))
            {
                break name;
            }
            stamp += 1;
        };
        self.events.push(Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(object.namespace.to_string()),
                creation_timestamp: Some(time(now)),
                ..Default::default()
            },
            involved_object: ObjectReference {
                kind: Some(object.kind.to_string()),
                name: Some(object.name.to_string()),
                namespace: Some(object.namespace.to_string()),
                ..Default::default()
            },
            type_: Some(type_.to_string()),
            reason: Some(reason.to_string()),
            message: Some(message),
            count: Some(1),
            first_timestamp: Some(time(now)),
            last_timestamp: Some(time(now)),
            source: Some(EventSource {
                component: Some(component.to_string()),
                host: None,
            }),
            reporting_component: Some(component.to_string()),
            ..Default::default()
        });
        if self.events.len() > KEEP {
            let extra = self.events.len() - KEEP;
            self.events.drain(..extra);
        }
    }

    /// Events about one object, oldest first.
    pub fn events_for(&self, kind: &str, ns: &str, name: &str) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| {
                e.involved_object.kind.as_deref() == Some(kind)
                    && e.involved_object.name.as_deref() == Some(name)
                    && e.involved_object.namespace.as_deref() == Some(ns)
            })
            .collect()
    }
}

/// The event a new one repeats (it counts up instead of being added):
/// about the same object, for the same reason, saying the same.
fn same_event(e: &Event, object: &Involved<'_>, reason: &str, message: &str) -> bool {
    e.involved_object.name.as_deref() == Some(object.name)
        && e.involved_object.kind.as_deref() == Some(object.kind)
        && e.reason.as_deref() == Some(reason)
        && e.message.as_deref() == Some(message)
}

pub fn involved<'a>(kind: &'a str, meta: &'a ObjectMeta) -> Involved<'a> {
    Involved {
        kind,
        namespace: namespace(meta),
        name: meta.name.as_deref().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::HostInfo;

    /// A full list of events still takes new ones under names of their
    /// own (both of a container's start share one `now`).
    #[test]
    fn events_of_one_moment_have_names_of_their_own() {
        let spec = crate::lab::load_str(std::path::Path::new("t.yaml"), "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: x\n", &Default::default()).unwrap();
        let now = Utc::now();
        let mut st =
            ClusterState::plan(&spec, &HostInfo::default(), now, &mut rand::rng()).unwrap();
        for i in 0..KEEP + 3 {
            let name = format!("p{i}");
            let pod = Involved {
                kind: "Pod",
                namespace: "default",
                name: &name,
            };
            st.record_started(pod, "c", now);
        }
        let names: std::collections::HashSet<_> =
            st.events.iter().map(|e| e.metadata.name.clone()).collect();
        assert_eq!(st.events.len(), KEEP);
        assert_eq!(names.len(), KEEP, "no two events share a name");
    }

    #[test]
    fn repeats_are_counted() {
        let spec = crate::lab::load_str(std::path::Path::new("t.yaml"), "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: x\n", &Default::default()).unwrap();
        let mut st =
            ClusterState::plan(&spec, &HostInfo::default(), Utc::now(), &mut rand::rng()).unwrap();
        let before = st.events.len();
        let who = Involved {
            kind: "Pod",
            namespace: "default",
            name: "p",
        };
        st.record(
            who.clone(),
            "Normal",
            "Started",
            "kubelet",
            "Started container c",
            Utc::now(),
        );
        st.record(
            who.clone(),
            "Normal",
            "Started",
            "kubelet",
            "Started container c",
            Utc::now(),
        );
        assert_eq!(st.events.len(), before + 1);
        assert_eq!(
            st.events_for("Pod", "default", "p").last().unwrap().count,
            Some(2)
        );
    }
}
