//! The scale lab: 1 000 pods in Deployments of 2 and 10 000 Services over
//! them, on 2 nodes. Shared by the scale bench (`benches/scale.rs`) and the
//! in-process cost probe (`examples/state_costs.rs`), which include it by
//! path.

pub fn lab_yaml(pods: usize, services: usize) -> String {
    let deployments = pods / 2;
    let mut y = String::from(
        "apiVersion: netlab.dev/v1alpha1\nkind: Lab\nspec:\n  nodes: 2\n  podCIDRMaskSize: 22\n",
    );
    for d in 0..deployments {
        y.push_str(&format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{d}\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: app-{d}\n  template:\n    metadata:\n      labels:\n        app: app-{d}\n    spec:\n      enableServiceLinks: false\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: httpd\n        image: radial/busyboxplus:curl\n        command: [\"sh\", \"-c\", \"echo ok > /tmp/index.html && exec httpd -f -p 80 -h /tmp\"]\n        ports:\n        - containerPort: 80\n"
        ));
    }
    for s in 0..services {
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{s}\nspec:\n  selector:\n    app: app-{}\n  ports:\n  - port: 80\n",
            s % deployments
        ));
    }
    y
}
