//! A container's `resources` as the kubelet reads them: quantities
//! (`500m`, `128Mi`, `1e3`), the API server's defaulting (a limit without a
//! request requests the limit), validation (only cpu and memory are
//! supported; everything else is refused, never ignored), and the pod's QoS
//! class. Pure: the cgroup values are computed in `runtime::resources`.

use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// The resource names netlab turns into cgroup limits.
pub const SUPPORTED: &[&str] = &["cpu", "memory"];

/// A container's cpu (in millicores) and memory (in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Amounts {
    pub cpu_milli: Option<i64>,
    pub memory: Option<i64>,
}

/// Requests and limits after defaulting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resources {
    pub requests: Amounts,
    pub limits: Amounts,
}

/// Parses a Kubernetes quantity into a value times 10^`scale`, rounded up
/// (as the API server rounds a quantity to the unit asked for).
fn parse_scaled(q: &str, scale: i32) -> Result<i64, String> {
    let bad = || format!("{q:?} is not a quantity (examples: 500m, 2, 128Mi, 1G)");
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    if number.is_empty() || number.starts_with('-') {
        return Err(bad());
    }
    let (binary, decimal): (u32, i32) = match suffix {
        "" => (0, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        s if s.starts_with(['e', 'E']) => (0, s[1..].parse().map_err(|_| bad())?),
        _ => return Err(bad()),
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{int}{frac}");
    let digits: u128 = digits.trim_start_matches('+').parse().map_err(|_| bad())?;
    // value = digits * 10^(decimal - frac.len() - scale) * 2^binary
    let exp = decimal - frac.len() as i32 - scale;
    let mut v = digits.checked_mul(1u128 << binary).ok_or_else(bad)?;
    if exp >= 0 {
        v = v.checked_mul(10u128.pow(exp as u32)).ok_or_else(bad)?;
    } else {
        let d = 10u128.checked_pow((-exp) as u32).ok_or_else(bad)?;
        v = v.div_ceil(d);
    }
    i64::try_from(v).map_err(|_| bad())
}

/// CPU in millicores (`0.5` and `500m` are 500).
pub fn cpu_milli(q: &str) -> Result<i64, String> {
    parse_scaled(q, -3)
}

/// Memory in bytes.
pub fn bytes(q: &str) -> Result<i64, String> {
    parse_scaled(q, 0)
}

fn amounts(list: Option<&BTreeMap<String, Quantity>>) -> Result<Amounts, String> {
    let mut a = Amounts::default();
    for (name, q) in list.into_iter().flatten() {
        match name.as_str() {
            "cpu" => a.cpu_milli = Some(cpu_milli(&q.0).map_err(|m| format!("cpu: {m}"))?),
            "memory" => a.memory = Some(bytes(&q.0).map_err(|m| format!("memory: {m}"))?),
            _ => {}
        }
    }
    Ok(a)
}

/// The container's resources, defaulted as the API server does: a
/// resource with a limit and no request requests its limit.
pub fn of(c: &Container) -> Result<Resources, String> {
    let r = c.resources.clone().unwrap_or_default();
    let limits = amounts(r.limits.as_ref()).map_err(|m| format!("limits.{m}"))?;
    let mut requests = amounts(r.requests.as_ref()).map_err(|m| format!("requests.{m}"))?;
    requests.cpu_milli = requests.cpu_milli.or(limits.cpu_milli);
    requests.memory = requests.memory.or(limits.memory);
    Ok(Resources { requests, limits })
}

fn check(r: &ResourceRequirements, path: &str, bad: &mut Vec<String>) {
    for (kind, list) in [("limits", &r.limits), ("requests", &r.requests)] {
        for (name, q) in list.iter().flatten() {
            let field = format!("{path}.resources.{kind}.{name}");
            match name.as_str() {
                "cpu" => {
                    if let Err(m) = cpu_milli(&q.0) {
                        bad.push(format!("{field}: {m}"));
                    }
                }
                "memory" => {
                    if let Err(m) = bytes(&q.0) {
                        bad.push(format!("{field}: {m}"));
                    }
                }
                _ => bad.push(format!(
                    "{field} is not supported by netlab (only {})",
                    SUPPORTED.join(" and ")
                )),
            }
        }
    }
    if r.claims.is_some() {
        bad.push(format!(
            "{path}.resources.claims is not supported by netlab"
        ));
    }
    let limits = amounts(r.limits.as_ref()).unwrap_or_default();
    let requests = amounts(r.requests.as_ref()).unwrap_or_default();
    for (name, req, lim) in [
        ("cpu", requests.cpu_milli, limits.cpu_milli),
        ("memory", requests.memory, limits.memory),
    ] {
        if let (Some(req), Some(lim)) = (req, lim) {
            if req > lim {
                bad.push(format!(
                    "{path}.resources.requests.{name}: must be less than or equal to {name} limit"
                ));
            }
        }
    }
}

/// Every resources problem of a pod spec at `path`.
pub fn validate(pod: &PodSpec, path: &str) -> Vec<String> {
    let mut bad = Vec::new();
    if pod.resources.is_some() {
        bad.push(format!(
            "{path}.resources (pod-level resources) is not supported by netlab: set them per container"
        ));
    }
    for (i, c) in pod.containers.iter().enumerate() {
        let cpath = format!("{path}.containers[{i}]");
        if let Some(r) = &c.resources {
            check(r, &cpath, &mut bad);
        }
        if c.resize_policy.is_some() {
            bad.push(format!("{cpath}.resizePolicy is not supported by netlab"));
        }
    }
    bad
}

/// The pod's QoS class, as the kubelet computes it.
pub fn qos_class(pod: &PodSpec) -> &'static str {
    let all: Vec<Resources> = pod
        .containers
        .iter()
        .map(|c| of(c).unwrap_or_default())
        .collect();
    let any = all
        .iter()
        .any(|r| r.requests != Amounts::default() || r.limits != Amounts::default());
    if !any {
        return "BestEffort";
    }
    let guaranteed = all.iter().all(|r| {
        r.limits.cpu_milli.is_some() && r.limits.memory.is_some() && r.requests == r.limits
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        let cpu = [
            ("500m", Ok(500)),
            ("0.5", Ok(500)),
            ("1", Ok(1000)),
            ("2.25", Ok(2250)),
            ("1u", Ok(1)), // rounded up, as the API server does
            ("100n", Ok(1)),
            ("x", Err(())),
            ("-1", Err(())),
        ];
        for (q, want) in cpu {
            assert_eq!(cpu_milli(q).map_err(|_| ()), want, "cpu {q}");
        }
        let mem = [
            ("128Mi", Ok(128 << 20)),
            ("1Gi", Ok(1 << 30)),
            ("129M", Ok(129_000_000)),
            ("1e3", Ok(1000)),
            ("1.5Ki", Ok(1536)),
            ("64", Ok(64)),
            ("12Q", Err(())),
            ("", Err(())),
        ];
        for (q, want) in mem {
            assert_eq!(bytes(q).map_err(|_| ()), want, "memory {q}");
        }
    }

    fn container(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> Container {
        let m = |l: &[(&str, &str)]| {
            (!l.is_empty()).then(|| {
                l.iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                limits: m(limits),
                requests: m(requests),
                claims: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn defaulting_validation_and_qos() {
        let c = container(&[("memory", "64Mi"), ("cpu", "500m")], &[("cpu", "100m")]);
        assert_eq!(
            of(&c).unwrap(),
            Resources {
                requests: Amounts {
                    cpu_milli: Some(100),
                    memory: Some(64 << 20)
                },
                limits: Amounts {
                    cpu_milli: Some(500),
                    memory: Some(64 << 20)
                },
            }
        );
        let pod = |cs: Vec<Container>| PodSpec {
            containers: cs,
            ..Default::default()
        };
        let cases = [
            (pod(vec![container(&[], &[])]), "BestEffort"),
            (pod(vec![c.clone()]), "Burstable"),
            (
                pod(vec![container(&[("memory", "64Mi"), ("cpu", "1")], &[])]),
                "Guaranteed",
            ),
            (
                pod(vec![
                    container(&[("memory", "64Mi"), ("cpu", "1")], &[]),
                    container(&[], &[]),
                ]),
                "Burstable",
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(qos_class(&spec), want);
        }
        let bad = [
            (
                container(&[("ephemeral-storage", "1Gi")], &[]),
                "spec.containers[0].resources.limits.ephemeral-storage is not supported by netlab",
            ),
            (
                container(&[("nvidia.com/gpu", "1")], &[]),
                "nvidia.com/gpu is not supported",
            ),
            (
                container(&[("memory", "lots")], &[]),
                "resources.limits.memory: \"lots\" is not a quantity",
            ),
            (
                container(&[("cpu", "1")], &[("cpu", "2")]),
                "requests.cpu: must be less than or equal to cpu limit",
            ),
        ];
        for (c, want) in bad {
            let errs = validate(&pod(vec![c]), "spec");
            assert!(errs.iter().any(|e| e.contains(want)), "{want} in {errs:?}");
        }
        assert!(validate(&pod(vec![c]), "spec").is_empty());
    }
}
