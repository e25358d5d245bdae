package chart

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// Paths relative to this module (chart/); the schemas are copies of the
// upstream files pinned in testdata/schemas/README.md.
const (
	schemaDir   = "testdata/schemas"
	zarfFile    = "../zarf.yaml"
	bundleFile  = "../bundle/uds-bundle.yaml"
	valuesFile  = "peat-gateway/values.yaml"
	chartYAML   = "peat-gateway/Chart.yaml"
	zarfRootDir = ".."
)

// compileSchema compiles a JSON schema document; draft detection follows its
// $schema (draft-04 for UDS, 2020-12 for Zarf, 2020-12 default for the CRD).
func compileSchema(t *testing.T, name string, doc any) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	url := "file:///schemas/" + name
	if err := c.AddResource(url, doc); err != nil {
		t.Fatalf("add %s: %v", name, err)
	}
	s, err := c.Compile(url)
	if err != nil {
		t.Fatalf("compile %s: %v", name, err)
	}
	return s
}

func jsonDoc(t *testing.T, b []byte) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// yamlDoc converts YAML to the JSON value model the validator expects.
func yamlDoc(t *testing.T, b []byte) any {
	t.Helper()
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	return jsonDoc(t, j)
}

func fileSchema(t *testing.T, file string) *jsonschema.Schema {
	t.Helper()
	return compileSchema(t, file, jsonDoc(t, readFile(t, schemaDir, file)))
}

// packageSchema returns the UDS Package CRD's openAPIV3Schema, made strict:
// the API server prunes unknown fields (or rejects them under strict field
// validation), so every object that lists its properties gets
// additionalProperties:false unless it preserves unknown fields.
func packageSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	var crd struct {
		Spec struct {
			Versions []struct {
				Name   string `json:"name"`
				Schema struct {
					OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(readFile(t, schemaDir, "packages.uds.dev.yaml"), &crd); err != nil {
		t.Fatal(err)
	}
	for _, v := range crd.Spec.Versions {
		if v.Name == "v1alpha1" {
			s := v.Schema.OpenAPIV3Schema
			// The API server handles these itself; the CRD schema leaves them out.
			props, _ := s["properties"].(map[string]any)
			props["apiVersion"] = map[string]any{"type": "string", "const": "uds.dev/v1alpha1"}
			props["kind"] = map[string]any{"type": "string", "const": "Package"}
			props["metadata"] = map[string]any{"type": "object"}
			strictify(s)
			b, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			return compileSchema(t, "package-v1alpha1.json", jsonDoc(t, b))
		}
	}
	t.Fatal("CRD has no v1alpha1 version")
	return nil
}

func strictify(node any) {
	switch n := node.(type) {
	case map[string]any:
		if _, hasProps := n["properties"]; hasProps {
			_, set := n["additionalProperties"]
			preserve, _ := n["x-kubernetes-preserve-unknown-fields"].(bool)
			if !set && !preserve {
				n["additionalProperties"] = false
			}
		}
		for _, v := range n {
			strictify(v)
		}
	case []any:
		for _, v := range n {
			strictify(v)
		}
	}
}

func udsValues() map[string]any {
	return map[string]any{
		"package": map[string]any{
			"enabled":         true,
			"serviceMeshMode": "ambient",
			"tenantExpose":    map[string]any{"enabled": true},
			"egressHosts":     []any{map[string]any{"host": "hooks.example.com"}},
			"additionalNetworkAllow": []any{map[string]any{
				"direction": "Ingress", "remoteNamespace": "peat-edge", "port": 8080, "description": "edge relays",
			}},
		},
		"sso":     map[string]any{"enabled": true},
		"storage": map[string]any{"backend": "postgres", "postgres": map[string]any{"existingSecret": "db"}},
		"cdc":     map[string]any{"nats": map[string]any{"url": "nats://nats.nats:4222"}, "kafka": map[string]any{"brokers": "k:9092"}},
	}
}

func TestUDSPackageValidatesAgainstCRD(t *testing.T) {
	schema := packageSchema(t)
	for name, vals := range map[string]map[string]any{
		"bundle defaults": {"package": map[string]any{"enabled": true}},
		"everything on":   udsValues(),
	} {
		t.Run(name, func(t *testing.T) {
			r := mustRender(t, vals)
			doc := r.objects["Package/peat-gateway"]
			if doc == "" {
				t.Fatalf("no Package rendered; have %v", r.kinds())
			}
			if err := schema.Validate(yamlDoc(t, []byte(doc))); err != nil {
				t.Fatalf("Package rejected by the uds-core CRD schema:\n%v\n%s", err, doc)
			}
		})
	}
}

func TestUDSPackageContent(t *testing.T) {
	r := mustRender(t, udsValues())
	var pkg struct {
		Spec struct {
			Network struct {
				ServiceMesh struct{ Mode string } `json:"serviceMesh"`
				Expose      []map[string]any      `json:"expose"`
				Allow       []map[string]any      `json:"allow"`
			} `json:"network"`
			SSO []struct {
				ClientID     string   `json:"clientId"`
				RedirectURIs []string `json:"redirectUris"`
				Groups       struct {
					AnyOf []string `json:"anyOf"`
				} `json:"groups"`
			} `json:"sso"`
			Monitor []map[string]any `json:"monitor"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal([]byte(r.objects["Package/peat-gateway"]), &pkg); err != nil {
		t.Fatal(err)
	}
	d := decode[appsv1.Deployment](t, r, "Deployment/peat-gateway")
	podLabels := d.Spec.Template.Labels

	// F3: every expose entry selects the gateway pods.
	if len(pkg.Spec.Network.Expose) != 2 {
		t.Fatalf("expose = %v", pkg.Spec.Network.Expose)
	}
	gateways := []string{}
	for _, e := range pkg.Spec.Network.Expose {
		gateways = append(gateways, e["gateway"].(string))
		sel, _ := e["selector"].(map[string]any)
		if len(sel) == 0 {
			t.Errorf("expose %v has no selector", e)
		}
		for k, v := range sel {
			if podLabels[k] != v {
				t.Errorf("expose selector %s=%v does not match the pods", k, v)
			}
		}
	}
	if !slices.Equal(gateways, []string{"admin", "tenant"}) {
		t.Errorf("gateways = %v", gateways)
	}
	if pkg.Spec.Network.ServiceMesh.Mode != "ambient" {
		t.Errorf("serviceMesh = %+v", pkg.Spec.Network.ServiceMesh)
	}

	// F8: no rule for ports the binary does not open, no open-to-anywhere ingress.
	remotes := map[string]bool{}
	for _, a := range pkg.Spec.Network.Allow {
		if a["remoteGenerated"] == "Anywhere" {
			t.Errorf("allow rule open to Anywhere: %v", a)
		}
		if a["direction"] == "Ingress" && a["remoteNamespace"] == nil && a["remoteSelector"] == nil && a["remoteGenerated"] == nil {
			t.Errorf("ingress rule without a remote: %v", a)
		}
		for _, k := range []string{"remoteNamespace", "remoteHost"} {
			if v, ok := a[k].(string); ok {
				remotes[v] = true
			}
		}
	}
	for _, want := range []string{"nats", "kafka", "postgres", "keycloak", "hooks.example.com", "peat-edge"} {
		if !remotes[want] {
			t.Errorf("no allow rule for %s; have %v", want, remotes)
		}
	}

	// F4/F5: groups in the CRD's shape and a real redirect URI.
	if len(pkg.Spec.SSO) != 1 {
		t.Fatalf("sso = %+v", pkg.Spec.SSO)
	}
	sso := pkg.Spec.SSO[0]
	if want := "https://peat.admin.uds.dev/_/auth/callback"; len(sso.RedirectURIs) != 1 || sso.RedirectURIs[0] != want {
		t.Errorf("redirectUris = %v, want [%s]", sso.RedirectURIs, want)
	}
	if !slices.Equal(sso.Groups.AnyOf, []string{"/peat-admin", "/peat-org-admin", "/peat-viewer"}) {
		t.Errorf("groups.anyOf = %v", sso.Groups.AnyOf)
	}
	if len(pkg.Spec.Monitor) != 1 || pkg.Spec.Monitor[0]["portName"] != "http" || pkg.Spec.Monitor[0]["path"] != "/metrics" {
		t.Errorf("monitor = %v", pkg.Spec.Monitor)
	}
}

// TestCRDSchemaCatchesReferenceDefects proves the strict CRD check would have
// caught the reference chart's defects (F3 missing selector, F4 groups map).
func TestCRDSchemaCatchesReferenceDefects(t *testing.T) {
	schema := packageSchema(t)
	r := mustRender(t, map[string]any{"package": map[string]any{"enabled": true}, "sso": map[string]any{"enabled": true}})
	var pkg map[string]any
	if err := yaml.Unmarshal([]byte(r.objects["Package/peat-gateway"]), &pkg); err != nil {
		t.Fatal(err)
	}
	check := func(name string, mutate func(spec map[string]any)) {
		b, _ := json.Marshal(pkg)
		var cp map[string]any
		_ = json.Unmarshal(b, &cp)
		mutate(cp["spec"].(map[string]any))
		b, _ = json.Marshal(cp)
		if err := schema.Validate(jsonDoc(t, b)); err == nil {
			t.Errorf("%s: accepted, want rejection", name)
		}
	}
	check("expose without selector", func(spec map[string]any) {
		delete(spec["network"].(map[string]any)["expose"].([]any)[0].(map[string]any), "selector")
	})
	check("groups as a map", func(spec map[string]any) {
		spec["sso"].([]any)[0].(map[string]any)["groups"] = map[string]any{"peat-admin": "Admins"}
	})
	check("unknown key", func(spec map[string]any) { spec["bogus"] = true })
}

type zarfPackage struct {
	Metadata struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"metadata"`
	Variables []struct {
		Name string `json:"name"`
	} `json:"variables"`
	Components []struct {
		Name   string   `json:"name"`
		Images []string `json:"images"`
		Charts []struct {
			Name        string   `json:"name"`
			Version     string   `json:"version"`
			Namespace   string   `json:"namespace"`
			ReleaseName string   `json:"releaseName"`
			LocalPath   string   `json:"localPath"`
			ValuesFiles []string `json:"valuesFiles"`
		} `json:"charts"`
		Actions struct {
			OnDeploy struct {
				After []struct {
					Wait *struct {
						Cluster struct {
							Kind, Name, Namespace, Condition string
						} `json:"cluster"`
					} `json:"wait"`
				} `json:"after"`
			} `json:"onDeploy"`
		} `json:"actions"`
	} `json:"components"`
}

func loadZarf(t *testing.T) zarfPackage {
	t.Helper()
	var z zarfPackage
	if err := yaml.Unmarshal(readFile(t, zarfFile), &z); err != nil {
		t.Fatal(err)
	}
	return z
}

func TestZarfSchema(t *testing.T) {
	schema := fileSchema(t, "zarf.schema.json")
	raw := readFile(t, zarfFile)
	if err := schema.Validate(yamlDoc(t, raw)); err != nil {
		t.Fatalf("zarf.yaml: %v", err)
	}
	bad := append(append([]byte{}, raw...), []byte("\nbogus: true\n")...)
	if schema.Validate(yamlDoc(t, bad)) == nil {
		t.Fatal("the zarf schema accepted an unknown top-level key; the check is not strict")
	}
}

func TestBundleSchema(t *testing.T) {
	schema := fileSchema(t, "uds.schema.json")
	raw := readFile(t, bundleFile)
	if err := schema.Validate(yamlDoc(t, raw)); err != nil {
		t.Fatalf("uds-bundle.yaml: %v", err)
	}
	bad := bytes.Replace(raw, []byte("kind: UDSBundle"), []byte("kind: UDSBundle\nbogus: true"), 1)
	if schema.Validate(yamlDoc(t, bad)) == nil {
		t.Fatal("the uds schema accepted an unknown top-level key")
	}
}

// TestZarfConsistency reproduces what `zarf dev lint` and a deploy would
// check, since Zarf itself cannot be imported here.
func TestZarfConsistency(t *testing.T) {
	z := loadZarf(t)
	var meta struct{ Name, Version, AppVersion string }
	if err := yaml.Unmarshal(readFile(t, chartYAML), &meta); err != nil {
		t.Fatal(err)
	}
	if len(z.Components) != 1 || len(z.Components[0].Charts) != 1 {
		t.Fatalf("want one component with one chart: %+v", z.Components)
	}
	comp := z.Components[0]
	ch := comp.Charts[0]
	if ch.Name != meta.Name || ch.Version != meta.Version {
		t.Errorf("zarf chart %s@%s, Chart.yaml %s@%s", ch.Name, ch.Version, meta.Name, meta.Version)
	}
	if abs, _ := filepath.Abs(filepath.Join(zarfRootDir, ch.LocalPath)); abs != mustAbs(t, chartDir) {
		t.Errorf("localPath %s does not point at the chart", ch.LocalPath)
	}
	if !strings.HasPrefix(z.Metadata.Version, meta.AppVersion+"-uds.") {
		t.Errorf("package version %q should be <appVersion>-uds.<n> (appVersion %s)", z.Metadata.Version, meta.AppVersion)
	}

	// Values files exist, and every ###ZARF_VAR_X### they use is declared.
	declared := map[string]bool{}
	for _, v := range z.Variables {
		declared[v.Name] = true
	}
	vals := map[string]any{}
	for _, f := range ch.ValuesFiles {
		b := readFile(t, zarfRootDir, f)
		for _, m := range zarfVar.FindAllStringSubmatch(string(b), -1) {
			if name := m[1]; !declared[name] {
				t.Errorf("%s uses undeclared variable %s", f, m[1])
			}
		}
		// Render with the values Zarf would pass, variables substituted.
		var m map[string]any
		if err := yaml.Unmarshal(bytes.ReplaceAll(b, []byte("###ZARF_VAR_DOMAIN###"), []byte("example.mil")), &m); err != nil {
			t.Fatal(err)
		}
		for k, v := range m {
			vals[k] = v
		}
	}
	if ch.ReleaseName != releaseName || ch.Namespace != namespace {
		t.Errorf("release %s/%s, tests render %s/%s", ch.Namespace, ch.ReleaseName, namespace, releaseName)
	}
	r := mustRender(t, vals)
	d := decode[appsv1.Deployment](t, r, "Deployment/peat-gateway")

	// The wait action must name the Deployment the chart renders.
	waits := 0
	for _, a := range comp.Actions.OnDeploy.After {
		if a.Wait == nil {
			continue
		}
		waits++
		w := a.Wait.Cluster
		if w.Kind != "deployment" || w.Name != d.Name || w.Namespace != ch.Namespace {
			t.Errorf("wait %+v does not match Deployment %s/%s", w, ch.Namespace, d.Name)
		}
	}
	if waits != 1 {
		t.Errorf("%d wait actions, want 1", waits)
	}

	// Air gap: Zarf ships only listed images, so every rendered image must be
	// listed, fully qualified and pinned (never :latest).
	for _, vals := range []map[string]any{vals, udsValues()} {
		r := mustRender(t, vals)
		d := decode[appsv1.Deployment](t, r, "Deployment/peat-gateway")
		spec := d.Spec.Template.Spec
		for _, c := range append(spec.InitContainers, spec.Containers...) {
			if !slices.Contains(comp.Images, c.Image) {
				t.Errorf("image %s is rendered but not listed in zarf.yaml %v", c.Image, comp.Images)
			}
		}
	}
	for _, img := range comp.Images {
		first := strings.SplitN(img, "/", 2)[0]
		if !strings.ContainsAny(first, ".:") {
			t.Errorf("image %s has no registry domain", img)
		}
		if strings.HasSuffix(img, ":latest") || !strings.Contains(img[strings.LastIndex(img, "/"):], ":") {
			t.Errorf("image %s is not pinned to a tag or digest", img)
		}
	}
}

var zarfVar = regexp.MustCompile(`###ZARF_VAR_([A-Z0-9_]+)###`)

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestBundleConsistency(t *testing.T) {
	z := loadZarf(t)
	var b struct {
		Metadata struct{ Version string } `json:"metadata"`
		Packages []struct {
			Name, Path, Ref string
			Overrides       map[string]map[string]struct {
				Values []struct {
					Path  string `json:"path"`
					Value any    `json:"value"`
				} `json:"values"`
				Variables []struct {
					Name    string `json:"name"`
					Path    string `json:"path"`
					Default any    `json:"default"`
				} `json:"variables"`
			} `json:"overrides"`
		} `json:"packages"`
	}
	if err := yaml.Unmarshal(readFile(t, bundleFile), &b); err != nil {
		t.Fatal(err)
	}
	if len(b.Packages) != 1 {
		t.Fatalf("packages = %+v", b.Packages)
	}
	p := b.Packages[0]
	if p.Name != z.Metadata.Name || p.Ref != z.Metadata.Version {
		t.Errorf("bundle package %s@%s, zarf package %s@%s", p.Name, p.Ref, z.Metadata.Name, z.Metadata.Version)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(bundleFile), p.Path, "zarf.yaml")); err != nil {
		t.Errorf("bundle path %q does not lead to zarf.yaml: %v", p.Path, err)
	}

	var defaults map[string]any
	if err := yaml.Unmarshal(readFile(t, valuesFile), &defaults); err != nil {
		t.Fatal(err)
	}
	overrideVals := map[string]any{}
	for compName, charts := range p.Overrides {
		var comp *struct{ charts []string }
		for _, c := range z.Components {
			if c.Name == compName {
				comp = &struct{ charts []string }{}
				for _, ch := range c.Charts {
					comp.charts = append(comp.charts, ch.Name)
				}
			}
		}
		if comp == nil {
			t.Fatalf("override component %q not in zarf.yaml", compName)
		}
		for chartName, o := range charts {
			if !slices.Contains(comp.charts, chartName) {
				t.Errorf("override chart %q not in component %q", chartName, compName)
			}
			for _, v := range o.Values {
				if !hasPath(defaults, v.Path) {
					t.Errorf("override value path %q is not in values.yaml", v.Path)
				}
				setPath(overrideVals, v.Path, v.Value)
			}
			for _, v := range o.Variables {
				if !hasPath(defaults, v.Path) {
					t.Errorf("override variable %s path %q is not in values.yaml", v.Name, v.Path)
				}
				setPath(overrideVals, v.Path, v.Default)
			}
		}
	}
	// The bundle as shipped must render and pass the CRD (the reference's did not).
	r := mustRender(t, overrideVals)
	if err := packageSchema(t).Validate(yamlDoc(t, []byte(r.objects["Package/peat-gateway"]))); err != nil {
		t.Fatalf("bundle's Package rejected: %v", err)
	}
}

func hasPath(m map[string]any, path string) bool {
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = mm[k]; !ok {
			return false
		}
	}
	return true
}

func setPath(m map[string]any, path string, v any) {
	keys := strings.Split(path, ".")
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[keys[len(keys)-1]] = v
}
