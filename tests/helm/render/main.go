// Command render renders a Helm 3 chart the way `helm template` does, for
// the parts of Helm's engine that helm/cairnd uses: Go's text/template with
// sprig (minus env/expandenv) and Helm's own include, tpl, required,
// toYaml, fromYaml, fromYamlArray, toJson, fromJson, fromJsonArray and
// lookup (empty, as in `helm template`); .Values, .Release, .Chart,
// .Capabilities and .Template; Chart.yaml's kubeVersion checked; values from values.yaml, then -f files,
// then --set, coalesced as Helm does (a null removes a default); the
// merged values checked against values.schema.json with gojsonschema,
// the validator Helm 3 uses; missingkey=zero with "<no value>" stripped;
// output split into documents, each parsed as YAML and sorted in Helm's
// install order; NOTES.txt rendered apart.
//
// Helm is not packaged in Debian; this exists so the chart's tests run
// offline. Anything the chart would need beyond this list must be added
// here with Helm's semantics, not approximated: the chart is meant to be
// installed with the real Helm.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/semver/v3"
	"github.com/Masterminds/sprig/v3"
	"github.com/xeipuuv/gojsonschema"
	"sigs.k8s.io/yaml"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// chartMeta mirrors the fields of Helm's chart.Metadata that templates
// read as .Chart.X (Helm passes the struct, so the names are Go's).
type chartMeta struct {
	APIVersion  string `json:"apiVersion"`
	Name        string `json:"name"`
	Version     string `json:"version"`
	AppVersion  string `json:"appVersion"`
	Description string `json:"description"`
	Type        string `json:"type"`
	KubeVersion string `json:"kubeVersion"`
	Home        string `json:"home"`
}

// kubeVersion and capabilities mirror chartutil.Capabilities.
type kubeVersion struct {
	Version string
	Major   string
	Minor   string
}

func (k kubeVersion) String() string     { return k.Version }
func (k kubeVersion) GitVersion() string { return k.Version }

type versionSet []string

func (v versionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

type capabilities struct {
	APIVersions versionSet
	KubeVersion kubeVersion
}

// installOrder is Helm 3's releaseutil.InstallOrder.
var installOrder = []string{
	"PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
	"PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
	"ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
	"CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
	"ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
	"DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
	"HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
	"APIService",
}

func main() {
	var files, sets, apis multi
	chartDir := flag.String("chart", "", "chart directory")
	name := flag.String("name", "cairnd", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	kube := flag.String("kube-version", "v1.29.0", "Kubernetes version for .Capabilities")
	outYAML := flag.String("out-yaml", "", "write the manifests here (default: stdout)")
	outJSON := flag.String("out-json", "", "write the objects here as a JSON array")
	outNotes := flag.String("out-notes", "", "write the rendered NOTES.txt here")
	flag.Var(&files, "f", "values file (repeatable; later wins)")
	flag.Var(&sets, "set", "KEY=VALUE, dotted key (repeatable; after the files)")
	flag.Var(&apis, "api-versions", "extra API version for .Capabilities.APIVersions")
	flag.Parse()
	if *chartDir == "" {
		fail(errors.New("--chart DIR is required"))
	}
	if err := run(*chartDir, *name, *namespace, *kube, files, sets, apis, *outYAML, *outJSON,
		*outNotes); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "Error: %v\n", err)
	os.Exit(1)
}

func run(chartDir, name, namespace, kube string, files, sets, apis []string,
	outYAML, outJSON, outNotes string) error {
	var meta chartMeta
	if err := readYAML(filepath.Join(chartDir, "Chart.yaml"), &meta); err != nil {
		return err
	}
	if meta.APIVersion != "v2" {
		return fmt.Errorf("Chart.yaml: apiVersion %q, want v2 (Helm 3)", meta.APIVersion)
	}
	defaults := map[string]interface{}{}
	if err := readYAML(filepath.Join(chartDir, "values.yaml"), &defaults); err != nil {
		return err
	}
	user := map[string]interface{}{}
	for _, f := range files {
		m := map[string]interface{}{}
		if err := readYAML(f, &m); err != nil {
			return err
		}
		user = mergeMaps(user, m)
	}
	for _, s := range sets {
		if err := parseSet(s, user); err != nil {
			return err
		}
	}
	values := coalesce(user, defaults)
	if err := validateSchema(chartDir, meta.Name, values); err != nil {
		return err
	}
	caps, err := makeCapabilities(kube, apis)
	if err != nil {
		return err
	}
	if err := checkKubeVersion(meta.KubeVersion, kube); err != nil {
		return err
	}
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": name, "Namespace": namespace, "Revision": 1, "IsUpgrade": false,
			"IsInstall": true, "Service": "Helm",
		},
		"Chart":        &meta,
		"Capabilities": caps,
	}
	rendered, err := renderAll(chartDir, meta.Name, top)
	if err != nil {
		return err
	}
	return writeOutputs(rendered, meta.Name, outYAML, outJSON, outNotes)
}

func readYAML(path string, out interface{}) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	return nil
}

// mergeMaps is Helm's cli/values mergeMaps: b over a, maps merged deeply.
func mergeMaps(a, b map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if vm, ok := v.(map[string]interface{}); ok {
			if bv, ok := out[k]; ok {
				if bvm, ok := bv.(map[string]interface{}); ok {
					out[k] = mergeMaps(bvm, vm)
					continue
				}
			}
		}
		out[k] = v
	}
	return out
}

// coalesce is Helm's chartutil.CoalesceValues for a chart without
// subcharts: user values over the chart's defaults, maps merged deeply,
// and a user null removes the key.
func coalesce(user, defaults map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(defaults))
	for k, v := range defaults {
		out[k] = v
	}
	for k, v := range user {
		if v == nil {
			delete(out, k)
			continue
		}
		um, uok := v.(map[string]interface{})
		dm, dok := out[k].(map[string]interface{})
		if uok && dok {
			out[k] = coalesce(um, dm)
		} else {
			out[k] = v
		}
	}
	// A null written in values.yaml itself is also dropped by Helm.
	for k, v := range out {
		if v == nil {
			delete(out, k)
		}
	}
	return out
}

var setKey = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

// parseSet applies one --set argument ("a.b=1,c=x") with the value types of
// Helm's strvals (true/false/null, int64 unless it starts with 0). Lists,
// indexes and escapes are refused rather than parsed differently.
func parseSet(arg string, into map[string]interface{}) error {
	if strings.ContainsAny(arg, "[]{}\\") {
		return fmt.Errorf("--set %q: lists, indexes and escapes are not supported here", arg)
	}
	for _, kv := range strings.Split(arg, ",") {
		eq := strings.IndexByte(kv, '=')
		if eq < 0 || !setKey.MatchString(kv[:eq]) {
			return fmt.Errorf("--set %q: expected KEY=VALUE with a dotted KEY", kv)
		}
		path := strings.Split(kv[:eq], ".")
		m := into
		for _, p := range path[:len(path)-1] {
			next, ok := m[p].(map[string]interface{})
			if !ok {
				next = map[string]interface{}{}
				m[p] = next
			}
			m = next
		}
		m[path[len(path)-1]] = typedVal(kv[eq+1:])
	}
	return nil
}

func typedVal(val string) interface{} {
	switch {
	case strings.EqualFold(val, "true"):
		return true
	case strings.EqualFold(val, "false"):
		return false
	case strings.EqualFold(val, "null"):
		return nil
	case val == "0":
		return int64(0)
	}
	if val != "" && val[0] != '0' {
		if iv, err := strconv.ParseInt(val, 10, 64); err == nil {
			return iv
		}
	}
	return val
}

// validateSchema is Helm 3's chartutil.ValidateAgainstSingleSchema, with its
// error text.
func validateSchema(chartDir, chartName string, values map[string]interface{}) error {
	schema, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	y, err := yaml.Marshal(values)
	if err != nil {
		return err
	}
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		return err
	}
	if bytes.Equal(j, []byte("null")) {
		j = []byte("{}")
	}
	res, err := gojsonschema.Validate(gojsonschema.NewBytesLoader(schema),
		gojsonschema.NewBytesLoader(j))
	if err != nil {
		return fmt.Errorf("values.schema.json: %v", err)
	}
	if res.Valid() {
		return nil
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "values don't meet the specifications of the schema(s) in the following chart(s):\n%s:\n", chartName)
	for _, e := range res.Errors() {
		fmt.Fprintf(&sb, "- %s\n", e)
	}
	return errors.New(sb.String())
}

func makeCapabilities(kube string, extra []string) (*capabilities, error) {
	m := regexp.MustCompile(`^v(\d+)\.(\d+)\.\d+$`).FindStringSubmatch(kube)
	if m == nil {
		return nil, fmt.Errorf("--kube-version %q: expected vMAJOR.MINOR.PATCH", kube)
	}
	apis := versionSet{"v1", "apps/v1", "policy/v1", "networking.k8s.io/v1"}
	apis = append(apis, extra...)
	return &capabilities{APIVersions: apis,
		KubeVersion: kubeVersion{Version: kube, Major: m[1], Minor: m[2]}}, nil
}

// checkKubeVersion is Helm's check of Chart.yaml's kubeVersion constraint.
func checkKubeVersion(constraint, kube string) error {
	if constraint == "" {
		return nil
	}
	c, err := semver.NewConstraint(constraint)
	if err != nil {
		return fmt.Errorf("Chart.yaml: kubeVersion %q: %v", constraint, err)
	}
	v, err := semver.NewVersion(kube)
	if err != nil {
		return err
	}
	if !c.Check(v) {
		return fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s",
			constraint, kube)
	}
	return nil
}

type renderedFile struct {
	name string // chart/templates/file
	text string
}

// funcMap is Helm's engine funcMap; include, tpl and required are bound to
// the template set in renderAll.
func funcMap() template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	extra := template.FuncMap{
		"toYaml": func(v interface{}) string {
			data, err := yaml.Marshal(v)
			if err != nil {
				return ""
			}
			return strings.TrimSuffix(string(data), "\n")
		},
		"fromYaml": func(s string) map[string]interface{} {
			m := map[string]interface{}{}
			if err := yaml.Unmarshal([]byte(s), &m); err != nil {
				m["Error"] = err.Error()
			}
			return m
		},
		"fromYamlArray": func(s string) []interface{} {
			a := []interface{}{}
			if err := yaml.Unmarshal([]byte(s), &a); err != nil {
				a = []interface{}{err.Error()}
			}
			return a
		},
		"toJson": func(v interface{}) string {
			data, err := json.Marshal(v)
			if err != nil {
				return ""
			}
			return string(data)
		},
		"fromJson": func(s string) map[string]interface{} {
			m := map[string]interface{}{}
			if err := json.Unmarshal([]byte(s), &m); err != nil {
				m["Error"] = err.Error()
			}
			return m
		},
		"fromJsonArray": func(s string) []interface{} {
			a := []interface{}{}
			if err := json.Unmarshal([]byte(s), &a); err != nil {
				a = []interface{}{err.Error()}
			}
			return a
		},
		"lookup": func(string, string, string, string) (map[string]interface{}, error) {
			return map[string]interface{}{}, nil
		},
		"include":  func(string, interface{}) string { return "not implemented" },
		"tpl":      func(string, interface{}) interface{} { return "not implemented" },
		"required": func(string, interface{}) (interface{}, error) { return "not implemented", nil },
	}
	for k, v := range extra {
		f[k] = v
	}
	return f
}

const recursionMaxNums = 1000

func renderAll(chartDir, chartName string, top map[string]interface{}) ([]renderedFile, error) {
	var names []string
	tdir := filepath.Join(chartDir, "templates")
	err := filepath.Walk(tdir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			rel, _ := filepath.Rel(tdir, p)
			names = append(names, chartName+"/templates/"+filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	t := template.New("gotpl").Option("missingkey=zero")
	fm := funcMap()
	includedNames := map[string]int{}
	fm["include"] = func(name string, data interface{}) (string, error) {
		var buf strings.Builder
		if v, ok := includedNames[name]; ok && v > recursionMaxNums {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		includedNames[name]++
		err := t.ExecuteTemplate(&buf, name, data)
		includedNames[name]--
		return buf.String(), err
	}
	fm["tpl"] = func(tpl string, vals map[string]interface{}) (string, error) {
		c, err := t.Clone()
		if err != nil {
			return "", err
		}
		c, err = c.New("tpl").Parse(tpl)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %v", tpl, err)
		}
		var buf strings.Builder
		if err := c.Execute(&buf, vals); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %v", tpl, err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	fm["required"] = func(warn string, val interface{}) (interface{}, error) {
		if val == nil {
			return val, errors.New(warn)
		} else if s, ok := val.(string); ok && s == "" {
			return val, errors.New(warn)
		}
		return val, nil
	}
	t.Funcs(fm)
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(tdir, strings.TrimPrefix(n, chartName+"/templates/")))
		if err != nil {
			return nil, err
		}
		if _, err := t.New(n).Parse(string(data)); err != nil {
			return nil, err
		}
	}
	var out []renderedFile
	for _, n := range names {
		if strings.HasPrefix(filepath.Base(n), "_") {
			continue
		}
		vals := make(map[string]interface{}, len(top)+1)
		for k, v := range top {
			vals[k] = v
		}
		vals["Template"] = map[string]interface{}{"Name": n, "BasePath": chartName + "/templates"}
		var buf strings.Builder
		if err := t.ExecuteTemplate(&buf, n, vals); err != nil {
			return nil, err
		}
		out = append(out, renderedFile{n, strings.ReplaceAll(buf.String(), "<no value>", "")})
	}
	return out, nil
}

type manifest struct {
	source string
	body   string
	object map[string]interface{}
	kind   string
	order  int
}

var sep = regexp.MustCompile(`(?:^|\s*\n)---\s*`)

// splitManifests is releaseutil.SplitManifests plus the YAML parse that
// `helm install` does on every document.
func splitManifests(files []renderedFile) ([]manifest, error) {
	rank := map[string]int{}
	for i, k := range installOrder {
		rank[k] = i
	}
	var out []manifest
	for _, f := range files {
		if !strings.HasSuffix(f.name, ".yaml") && !strings.HasSuffix(f.name, ".yml") {
			continue
		}
		for _, d := range sep.Split(f.text, -1) {
			if strings.TrimSpace(d) == "" {
				continue
			}
			obj := map[string]interface{}{}
			if err := yaml.Unmarshal([]byte(d), &obj); err != nil {
				return nil, fmt.Errorf("YAML parse error on %s: %v\n%s", f.name, err, d)
			}
			// A document of comments only is kept in the output, as
			// `helm template` prints it, but makes no object.
			kind, _ := obj["kind"].(string)
			r, ok := rank[kind]
			if !ok {
				r = len(installOrder)
			}
			out = append(out, manifest{f.name, strings.TrimSpace(d), obj, kind, r})
		}
	}
	// releaseutil's lessByKind: install order; unknown kinds last, by kind.
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].order != out[j].order {
			return out[i].order < out[j].order
		}
		return out[i].order == len(installOrder) && out[i].kind < out[j].kind
	})
	return out, nil
}

func writeOutputs(files []renderedFile, chartName, outYAML, outJSON, outNotes string) error {
	ms, err := splitManifests(files)
	if err != nil {
		return err
	}
	var y strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&y, "---\n# Source: %s\n%s\n", m.source, m.body)
	}
	if outYAML == "" {
		fmt.Print(y.String())
	} else if err := os.WriteFile(outYAML, []byte(y.String()), 0o644); err != nil {
		return err
	}
	if outJSON != "" {
		type entry struct {
			Source string                 `json:"source"`
			Object map[string]interface{} `json:"object"`
		}
		all := make([]entry, 0, len(ms))
		for _, m := range ms {
			if len(m.object) > 0 {
				all = append(all, entry{m.source, m.object})
			}
		}
		data, err := json.MarshalIndent(all, "", " ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(outJSON, data, 0o644); err != nil {
			return err
		}
	}
	if outNotes != "" {
		notes := ""
		for _, f := range files {
			if f.name == chartName+"/templates/NOTES.txt" {
				notes = f.text
			}
		}
		if err := os.WriteFile(outNotes, []byte(notes), 0o644); err != nil {
			return err
		}
	}
	return nil
}
