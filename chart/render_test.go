package chart

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

const (
	chartDir    = "peat-gateway"
	releaseName = "peat-gateway"
	namespace   = "peat-system"
)

// rendered is one chart rendering, indexed by "Kind/name".
type rendered struct {
	objects map[string]string
	notes   string
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return ch
}

// renderChart renders like `helm install --dry-run`, including the
// values.schema.json validation Helm applies; it returns the error instead of
// failing so that negative cases can assert on it.
func renderChart(t *testing.T, vals map[string]any) (*rendered, error) {
	t.Helper()
	ch := loadChart(t)
	opts := chartutil.ReleaseOptions{Name: releaseName, Namespace: namespace, IsInstall: true, Revision: 1}
	rv, err := chartutil.ToRenderValues(ch, vals, opts, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	out := &rendered{objects: map[string]string{}}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		body := files[name]
		if strings.HasSuffix(name, "NOTES.txt") {
			out.notes = body
			continue
		}
		for _, doc := range releaseutil.SplitManifests(body) {
			var head struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Name      string `json:"name"`
					Namespace string `json:"namespace"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				return nil, fmt.Errorf("%s: %w\n%s", name, err, doc)
			}
			if head.Kind == "" {
				continue
			}
			if head.Metadata.Namespace != namespace {
				t.Errorf("%s/%s: namespace %q, want %q", head.Kind, head.Metadata.Name, head.Metadata.Namespace, namespace)
			}
			key := head.Kind + "/" + head.Metadata.Name
			if _, dup := out.objects[key]; dup {
				t.Errorf("duplicate object %s", key)
			}
			out.objects[key] = doc
		}
	}
	return out, nil
}

func mustRender(t *testing.T, vals map[string]any) *rendered {
	t.Helper()
	r, err := renderChart(t, vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return r
}

// decode unmarshals strictly into a typed API object, so misspelt or
// misplaced fields in a template fail the test.
func decode[T any](t *testing.T, r *rendered, key string) *T {
	t.Helper()
	doc, ok := r.objects[key]
	if !ok {
		t.Fatalf("%s not rendered; have %v", key, r.kinds())
	}
	v := new(T)
	if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
		t.Fatalf("%s does not decode strictly: %v\n%s", key, err, doc)
	}
	return v
}

func (r *rendered) kinds() []string {
	keys := make([]string, 0, len(r.objects))
	for k := range r.objects {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (r *rendered) has(key string) bool {
	_, ok := r.objects[key]
	return ok
}

// envOf lists a container's env as name → literal value, or
// "secret:<name>/<key>" for a secretKeyRef, so tests compare one flat map.
func envOf(t *testing.T, c corev1.Container) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, e := range c.Env {
		if _, dup := m[e.Name]; dup {
			t.Errorf("env %s set twice", e.Name)
		}
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			m[e.Name] = "secret:" + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		case e.ValueFrom != nil:
			t.Errorf("env %s: unexpected valueFrom %+v", e.Name, e.ValueFrom)
		default:
			m[e.Name] = e.Value
		}
	}
	return m
}

func assertEnv(t *testing.T, got, want map[string]string) {
	t.Helper()
	gj, _ := json.MarshalIndent(got, "", "  ")
	wj, _ := json.MarshalIndent(want, "", "  ")
	if string(gj) != string(wj) {
		t.Fatalf("env mismatch\n got: %s\nwant: %s", gj, wj)
	}
}

func container(t *testing.T, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%d containers, want 1", n)
	}
	return d.Spec.Template.Spec.Containers[0]
}

func TestDefaultValues(t *testing.T) {
	r := mustRender(t, nil)
	want := []string{
		"Deployment/peat-gateway",
		"PersistentVolumeClaim/peat-gateway-data",
		"Secret/peat-gateway-admin-token",
		"Service/peat-gateway",
		"ServiceAccount/peat-gateway",
	}
	if got := r.kinds(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("objects = %v, want %v", got, want)
	}

	d := decode[appsv1.Deployment](t, r, "Deployment/peat-gateway")
	if *d.Spec.Replicas != 1 {
		t.Errorf("replicas = %d", *d.Spec.Replicas)
	}
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("strategy = %q, want Recreate for a ReadWriteOnce SQLite volume", d.Spec.Strategy.Type)
	}
	c := container(t, d)
	if c.Image != "ghcr.io/defenseunicorns/peat-gateway:0.1.0" {
		t.Errorf("image = %q", c.Image)
	}
	assertEnv(t, envOf(t, c), map[string]string{
		"PEAT_GATEWAY_BIND":     "0.0.0.0:8080",
		"PEAT_GATEWAY_DATA_DIR": "/data/peat-gateway",
		"PEAT_STORAGE_BACKEND":  "sqlite",
		"PEAT_ADMIN_TOKEN":      "secret:peat-gateway-admin-token/token",
		"PEAT_LOG_FORMAT":       "json",
	})

	// Only the port the Go binary opens (F8: no phantom QUIC/enrollment ports).
	if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != 8080 || c.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("ports = %+v", c.Ports)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.String() != "http" {
			t.Fatalf("%s probe = %+v", name, p)
		}
	}
	if c.LivenessProbe.HTTPGet.Path != "/health" || c.ReadinessProbe.HTTPGet.Path != "/ready" {
		t.Errorf("probe paths: liveness %q readiness %q", c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path)
	}

	// Restricted Pod Security defaults (F7).
	ps := d.Spec.Template.Spec.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.FSGroup == nil || ps.RunAsUser == nil || *ps.RunAsUser == 0 ||
		ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext = %+v", ps)
	}
	cs := c.SecurityContext
	if cs == nil || cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation || cs.ReadOnlyRootFilesystem == nil ||
		!*cs.ReadOnlyRootFilesystem || cs.Capabilities == nil || len(cs.Capabilities.Drop) != 1 || cs.Capabilities.Drop[0] != "ALL" {
		t.Errorf("container securityContext = %+v", cs)
	}

	vols := map[string]corev1.Volume{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	if v := vols["data"]; v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != "peat-gateway-data" {
		t.Errorf("data volume = %+v", v)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
		if _, ok := vols[m.Name]; !ok {
			t.Errorf("mount %s has no volume", m.Name)
		}
	}
	if mounts["data"] != "/data/peat-gateway" || mounts["tmp"] != "/tmp" {
		t.Errorf("mounts = %v", mounts)
	}

	pvc := decode[corev1.PersistentVolumeClaim](t, r, "PersistentVolumeClaim/peat-gateway-data")
	if q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; q.String() != "10Gi" {
		t.Errorf("pvc size = %s", q.String())
	}
	if len(pvc.Spec.AccessModes) != 1 || pvc.Spec.AccessModes[0] != corev1.ReadWriteOnce {
		t.Errorf("pvc access modes = %v", pvc.Spec.AccessModes)
	}

	svc := decode[corev1.Service](t, r, "Service/peat-gateway")
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8080 || svc.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("service ports = %+v", svc.Spec.Ports)
	}
	podLabels := d.Spec.Template.Labels
	for k, v := range svc.Spec.Selector {
		if podLabels[k] != v {
			t.Errorf("service selector %s=%s does not match pod labels %v", k, v, podLabels)
		}
	}
	for k, v := range d.Spec.Selector.MatchLabels {
		if podLabels[k] != v {
			t.Errorf("deployment selector %s=%s does not match pod labels", k, v)
		}
	}
	if d.Spec.Template.Spec.ServiceAccountName != "peat-gateway" {
		t.Errorf("serviceAccountName = %q", d.Spec.Template.Spec.ServiceAccountName)
	}

	// F6: the admin API is never left open: a random token is generated.
	sec := decode[corev1.Secret](t, r, "Secret/peat-gateway-admin-token")
	if tok := sec.Data["token"]; len(tok) != 48 {
		t.Errorf("generated admin token has %d bytes, want 48", len(tok))
	}
	if sec.Annotations["helm.sh/resource-policy"] != "keep" {
		t.Errorf("admin token secret would be deleted on uninstall")
	}
	if !strings.Contains(r.notes, "peat-gateway-admin-token") {
		t.Errorf("NOTES.txt does not say where the admin token is:\n%s", r.notes)
	}
}

func TestPostgresReplicas(t *testing.T) {
	r := mustRender(t, map[string]any{
		"replicaCount": 3,
		"storage":      map[string]any{"backend": "postgres", "postgres": map[string]any{"existingSecret": "peat-db"}},
		"adminToken":   map[string]any{"existingSecret": "peat-admin"},
	})
	for _, absent := range []string{"PersistentVolumeClaim/peat-gateway-data", "Secret/peat-gateway-admin-token", "Secret/peat-gateway-database"} {
		if r.has(absent) {
			t.Errorf("%s rendered, but it is not needed with postgres and existing secrets", absent)
		}
	}
	d := decode[appsv1.Deployment](t, r, "Deployment/peat-gateway")
	if *d.Spec.Replicas != 3 {
		t.Errorf("replicas = %d", *d.Spec.Replicas)
	}
	if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || d.Spec.Strategy.RollingUpdate == nil ||
		d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		t.Errorf("strategy = %+v, want a rolling update that keeps capacity", d.Spec.Strategy)
	}
	c := container(t, d)
	assertEnv(t, envOf(t, c), map[string]string{
		"PEAT_GATEWAY_BIND":     "0.0.0.0:8080",
		"PEAT_GATEWAY_DATA_DIR": "/data/peat-gateway",
		"PEAT_STORAGE_BACKEND":  "postgres",
		"PEAT_DATABASE_URL":     "secret:peat-db/url",
		"PEAT_ADMIN_TOKEN":      "secret:peat-admin/token",
		"PEAT_LOG_FORMAT":       "json",
	})
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "data" && v.EmptyDir == nil {
			t.Errorf("data volume with postgres = %+v, want emptyDir", v)
		}
	}
}

func TestPostgresInlineURLGoesToSecret(t *testing.T) {
	const url = "postgres://peat:s3cret@db:5432/peat"
	r := mustRender(t, map[string]any{
		"storage": map[string]any{"backend": "postgres", "postgres": map[string]any{"url": url}},
	})
	sec := decode[corev1.Secret](t, r, "Secret/peat-gateway-database")
	if sec.StringData["url"] != url {
		t.Errorf("database secret = %v", sec.StringData)
	}
	if strings.Contains(r.objects["Deployment/peat-gateway"], "s3cret") {
		t.Error("the database password appears in the Deployment")
	}
	env := envOf(t, container(t, decode[appsv1.Deployment](t, r, "Deployment/peat-gateway")))
	if env["PEAT_DATABASE_URL"] != "secret:peat-gateway-database/url" {
		t.Errorf("PEAT_DATABASE_URL = %q", env["PEAT_DATABASE_URL"])
	}
}

func TestEveryEnvVar(t *testing.T) {
	r := mustRender(t, map[string]any{
		"logFormat":  "text",
		"adminToken": map[string]any{"existingSecret": "admin", "secretKey": "tok"},
		"encryption": map[string]any{"existingSecret": "kek"},
		"kms":        map[string]any{"keyArn": "arn:aws:kms:us-east-1:111122223333:key/abc"},
		"vault":      map[string]any{"addr": "https://vault.vault:8200", "existingSecret": "vault-token"},
		"cdc": map[string]any{
			"nats":  map[string]any{"url": "nats://nats.nats:4222"},
			"kafka": map[string]any{"brokers": "kafka-0:9092,kafka-1:9092"},
		},
		"ingress":  map[string]any{"nats": map[string]any{"url": "nats://nats.nats:4222"}},
		"webhook":  map[string]any{"allowPrivate": true},
		"extraEnv": []any{map[string]any{"name": "GOMEMLIMIT", "value": "900MiB"}},
	})
	assertEnv(t, envOf(t, container(t, decode[appsv1.Deployment](t, r, "Deployment/peat-gateway"))), map[string]string{
		"PEAT_GATEWAY_BIND":            "0.0.0.0:8080",
		"PEAT_GATEWAY_DATA_DIR":        "/data/peat-gateway",
		"PEAT_STORAGE_BACKEND":         "sqlite",
		"PEAT_ADMIN_TOKEN":             "secret:admin/tok",
		"PEAT_KEK":                     "secret:kek/peat-kek",
		"PEAT_KMS_KEY_ARN":             "arn:aws:kms:us-east-1:111122223333:key/abc",
		"PEAT_VAULT_ADDR":              "https://vault.vault:8200",
		"PEAT_VAULT_TOKEN":             "secret:vault-token/token",
		"PEAT_VAULT_TRANSIT_KEY":       "peat-gateway",
		"PEAT_CDC_NATS_URL":            "nats://nats.nats:4222",
		"PEAT_CDC_KAFKA_BROKERS":       "kafka-0:9092,kafka-1:9092",
		"PEAT_INGRESS_NATS_URL":        "nats://nats.nats:4222",
		"PEAT_INGRESS_STREAM_NAME":     "peat-gw-ctl",
		"PEAT_INGRESS_CONSUMER_PREFIX": "peat-gw",
		"PEAT_INGRESS_MAX_DELIVER":     "5",
		"PEAT_INGRESS_ACK_WAIT_SECS":   "30",
		"PEAT_LOG_FORMAT":              "text",
		"PEAT_WEBHOOK_ALLOW_PRIVATE":   "true",
		"GOMEMLIMIT":                   "900MiB",
	})
}

func TestRejectedValues(t *testing.T) {
	for name, tc := range map[string]struct {
		vals map[string]any
		want string
	}{
		"replicas need postgres": {map[string]any{"replicaCount": 2}, "needs storage.backend=postgres"},
		"postgres needs a url":   {map[string]any{"storage": map[string]any{"backend": "postgres"}}, "storage.postgres.existingSecret or storage.postgres.url"},
		"unknown backend":        {map[string]any{"storage": map[string]any{"backend": "redb"}}, "backend"},
		"latest tag":             {map[string]any{"image": map[string]any{"tag": "latest"}}, "tag"},
		"unknown value key":      {map[string]any{"replicas": 2}, "replicas"},
		"vault needs a token":    {map[string]any{"vault": map[string]any{"addr": "https://v:8200"}}, "vault.existingSecret"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := renderChart(t, tc.vals)
			if err == nil {
				t.Fatal("rendered, want an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestServiceMonitor(t *testing.T) {
	r := mustRender(t, map[string]any{
		"metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true}},
		"package": map[string]any{"enabled": true},
	})
	var sm struct {
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			Endpoints []struct {
				Port, Path, Interval string
			} `json:"endpoints"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal([]byte(r.objects["ServiceMonitor/peat-gateway"]), &sm); err != nil {
		t.Fatal(err)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "http" || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("endpoints = %+v", sm.Spec.Endpoints)
	}
	if sm.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != "peat-gateway" {
		t.Errorf("selector = %v", sm.Spec.Selector.MatchLabels)
	}
	// One scrape config per endpoint: the Package must not add a second.
	if strings.Contains(r.objects["Package/peat-gateway"], "monitor:") {
		t.Error("Package declares a monitor while the chart ServiceMonitor is on")
	}
}

func TestNetworkPolicies(t *testing.T) {
	r := mustRender(t, map[string]any{"networkPolicy": map[string]any{
		"enabled":        true,
		"allowAllEgress": false,
		"ingressFrom":    []any{map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "ingress"}}}},
	}})
	in := decode[networkingv1.NetworkPolicy](t, r, "NetworkPolicy/peat-gateway-ingress")
	if len(in.Spec.Ingress) != 1 || len(in.Spec.Ingress[0].From) != 1 || in.Spec.Ingress[0].Ports[0].Port.String() != "http" {
		t.Errorf("ingress policy = %+v", in.Spec.Ingress)
	}
	eg := decode[networkingv1.NetworkPolicy](t, r, "NetworkPolicy/peat-gateway-egress")
	if len(eg.Spec.Egress) != 1 || len(eg.Spec.Egress[0].Ports) != 2 || eg.Spec.Egress[0].Ports[0].Port.IntValue() != 53 {
		t.Errorf("egress policy = %+v, want DNS only", eg.Spec.Egress)
	}
	if in.Spec.PodSelector.MatchLabels["app.kubernetes.io/instance"] != releaseName {
		t.Errorf("pod selector = %v", in.Spec.PodSelector.MatchLabels)
	}
	// Under UDS the operator owns network policy.
	r = mustRender(t, map[string]any{"networkPolicy": map[string]any{"enabled": true}, "package": map[string]any{"enabled": true}})
	if r.has("NetworkPolicy/peat-gateway-ingress") {
		t.Error("NetworkPolicy rendered alongside the UDS Package")
	}
}

func TestFullnameOverride(t *testing.T) {
	r := mustRender(t, map[string]any{"fullnameOverride": "gw", "package": map[string]any{"enabled": true}})
	for _, key := range []string{"Deployment/gw", "Service/gw", "ServiceAccount/gw", "PersistentVolumeClaim/gw-data", "Secret/gw-admin-token", "Package/gw"} {
		if !r.has(key) {
			t.Errorf("%s missing; have %v", key, r.kinds())
		}
	}
}

func readFile(t *testing.T, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(parts...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
