package deploy_test

// The Kubernetes manifests under k8s/: every file parses, every
// kustomization names files that exist, and the workload is consistent with
// itself (probes on a declared port, selectors that match, Secrets and
// ConfigMaps that exist) and with the code (environment names, flags, a
// pipelines file that loads). When kustomize or kubectl is installed, the
// rendered base and overlays are checked the same way.

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sessionflow/sessionflow/config"
)

const k8sDir = "k8s"

type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	node *yaml.Node // the whole document, for decoding by kind
	file string
}

func (o object) id() string { return o.Kind + "/" + o.Metadata.Name }

func (o object) decode(t *testing.T, into any) {
	t.Helper()
	if err := o.node.Decode(into); err != nil {
		t.Fatalf("%s %s: %v", o.file, o.id(), err)
	}
}

// parseDocs parses a multi-document YAML stream.
func parseDocs(data []byte, file string) ([]object, error) {
	var objs []object
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(n.Content) == 0 || n.Content[0].Kind != yaml.MappingNode || len(n.Content[0].Content) == 0 {
			continue // an empty document
		}
		o := object{node: &n, file: file}
		if err := n.Decode(&o); err != nil {
			return nil, err
		}
		objs = append(objs, o)
	}
}

type kustomization struct {
	Resources []string `yaml:"resources"`
	Patches   []struct {
		Path  string `yaml:"path"`
		Patch string `yaml:"patch"`
	} `yaml:"patches"`
	ConfigMapGenerator []generator `yaml:"configMapGenerator"`
	SecretGenerator    []generator `yaml:"secretGenerator"`
}

type generator struct {
	Name     string   `yaml:"name"`
	Behavior string   `yaml:"behavior"`
	Files    []string `yaml:"files"`
	Envs     []string `yaml:"envs"`
	Literals []string `yaml:"literals"`
}

// loadTree reads a kustomization and the resources it includes,
// recursively. Generated ConfigMaps become ConfigMap objects under their
// generator name, as kustomize renders them (without the hash suffix).
func loadTree(t *testing.T, dir string) (kustomization, []object) {
	t.Helper()
	kf := filepath.Join(dir, "kustomization.yaml")
	data, err := os.ReadFile(kf)
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&k); err != nil {
		t.Fatalf("%s: %v", kf, err)
	}
	var objs []object
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		switch {
		case err != nil:
			t.Errorf("%s: resource %s: %v", kf, r, err)
		case st.IsDir():
			_, sub := loadTree(t, p)
			objs = append(objs, sub...)
		default:
			objs = append(objs, readObjects(t, p)...)
		}
	}
	for _, p := range k.Patches {
		if p.Path != "" {
			if _, err := os.Stat(filepath.Join(dir, p.Path)); err != nil {
				t.Errorf("%s: patch %s: %v", kf, p.Path, err)
			}
		}
	}
	for _, g := range k.ConfigMapGenerator {
		data := map[string]string{}
		for _, f := range g.Files {
			key, file, ok := strings.Cut(f, "=")
			if !ok {
				key, file = filepath.Base(f), f
			}
			b, err := os.ReadFile(filepath.Join(dir, file))
			if err != nil {
				t.Errorf("%s: configMapGenerator %s: %v", kf, g.Name, err)
				continue
			}
			data[key] = string(b)
		}
		for _, l := range g.Literals {
			key, v, _ := strings.Cut(l, "=")
			data[key] = v
		}
		objs = append(objs, syntheticConfigMap(t, g.Name, data, kf))
	}
	for _, g := range k.SecretGenerator {
		for _, f := range append(slices.Clone(g.Files), g.Envs...) {
			_, file, ok := strings.Cut(f, "=")
			if !ok {
				file = f
			}
			if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
				t.Errorf("%s: secretGenerator %s: %v", kf, g.Name, err)
			}
		}
	}
	return k, objs
}

func syntheticConfigMap(t *testing.T, name string, data map[string]string, file string) object {
	t.Helper()
	doc, err := yaml.Marshal(map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": name}, "data": data})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := parseDocs(doc, file)
	if err != nil {
		t.Fatal(err)
	}
	return objs[0]
}

func readObjects(t *testing.T, file string) []object {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := parseDocs(data, file)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return objs
}

// kustomizationDirs are the directories under k8s/ with a kustomization.
func kustomizationDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(k8sDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "kustomization.yaml" {
			dirs = append(dirs, filepath.Dir(p))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(dirs, filepath.Join(k8sDir, "base")) || !slices.Contains(dirs, filepath.Join(k8sDir, "overlays", "production")) {
		t.Fatalf("want kustomizations in k8s/base and k8s/overlays/production, found %v", dirs)
	}
	return dirs
}

// TestK8sManifestsParse parses every YAML file under k8s/: each document
// is a Kubernetes object (or a kustomization) with a kind and a name.
func TestK8sManifestsParse(t *testing.T) {
	n := 0
	err := filepath.WalkDir(k8sDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (!strings.HasSuffix(p, ".yaml") && !strings.HasSuffix(p, ".yml")) {
			return err
		}
		objs := readObjects(t, p)
		if len(objs) == 0 {
			t.Errorf("%s: no document", p)
		}
		if d.Name() == "pipelines.yaml" {
			if _, err := config.Load(p); err != nil {
				t.Errorf("%s: %v", p, err)
			}
			return nil
		}
		for _, o := range objs {
			n++
			if o.APIVersion == "" || o.Kind == "" || (o.Kind != "Kustomization" && o.Metadata.Name == "") {
				t.Errorf("%s: a document without apiVersion, kind or metadata.name", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d Kubernetes documents", n)
}

// TestK8sKustomizations checks each kustomization's files, its patches'
// targets, and the objects it builds.
func TestK8sKustomizations(t *testing.T) {
	for _, dir := range kustomizationDirs(t) {
		t.Run(filepath.ToSlash(dir), func(t *testing.T) {
			k, objs := loadTree(t, dir)
			have := map[string]bool{}
			for _, o := range objs {
				have[o.id()] = true
			}
			for _, p := range k.Patches {
				var targets []object
				if p.Path != "" {
					targets = readObjects(t, filepath.Join(dir, p.Path))
				} else {
					var err error
					if targets, err = parseDocs([]byte(p.Patch), dir+" inline patch"); err != nil {
						t.Fatalf("inline patch: %v", err)
					}
				}
				for _, o := range targets {
					if !have[o.id()] {
						t.Errorf("patch %s targets %s, which the kustomization does not contain", o.file, o.id())
					}
				}
			}
			// Only a self-contained kustomization (the base) must hold every
			// Secret it refers to; the production overlay deletes the
			// placeholder Secrets on purpose.
			checkWorkload(t, dir, objs, false)
		})
	}
}

// TestK8sRendered builds every kustomization with kustomize (or kubectl
// kustomize) when one is installed and checks the rendered objects.
func TestK8sRendered(t *testing.T) {
	var build func(dir string) *exec.Cmd
	if p, err := exec.LookPath("kustomize"); err == nil {
		build = func(dir string) *exec.Cmd { return exec.Command(p, "build", dir) }
	} else if p, err := exec.LookPath("kubectl"); err == nil {
		build = func(dir string) *exec.Cmd { return exec.Command(p, "kustomize", dir) }
	} else {
		t.Skip("neither kustomize nor kubectl is installed; the static checks still ran")
	}
	for _, dir := range kustomizationDirs(t) {
		t.Run(filepath.ToSlash(dir), func(t *testing.T) {
			var out, errb bytes.Buffer
			cmd := build(dir)
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, errb.String())
			}
			objs, err := parseDocs(out.Bytes(), dir+" (rendered)")
			if err != nil {
				t.Fatal(err)
			}
			external := strings.Contains(filepath.ToSlash(dir), "overlays/production")
			if external {
				for _, o := range objs {
					if o.Kind == "Secret" {
						t.Errorf("the production overlay renders %s: its Secrets are managed outside the repository", o.id())
					}
				}
			}
			checkWorkload(t, dir+" (rendered)", objs, external)
		})
	}
}

type podTemplate struct {
	Metadata struct {
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec struct {
		Containers      []container `yaml:"containers"`
		Volumes         []podVolume `yaml:"volumes"`
		SecurityContext struct {
			RunAsNonRoot *bool `yaml:"runAsNonRoot"`
		} `yaml:"securityContext"`
	} `yaml:"spec"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort string `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef    *keyRef `yaml:"secretKeyRef"`
			ConfigMapKeyRef *keyRef `yaml:"configMapKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	EnvFrom []struct {
		SecretRef    *keyRef `yaml:"secretRef"`
		ConfigMapRef *keyRef `yaml:"configMapRef"`
	} `yaml:"envFrom"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	StartupProbe   *probe `yaml:"startupProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

type keyRef struct {
	Name     string `yaml:"name"`
	Key      string `yaml:"key"`
	Optional bool   `yaml:"optional"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type podVolume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name  string      `yaml:"name"`
		Items []keyToPath `yaml:"items"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName string      `yaml:"secretName"`
		Items      []keyToPath `yaml:"items"`
		Optional   bool        `yaml:"optional"`
	} `yaml:"secret"`
}

type keyToPath struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
}

// dataOf returns the string data of a ConfigMap or Secret (base64 data
// decoded).
func dataOf(t *testing.T, o object) map[string]string {
	t.Helper()
	var v struct {
		Data       map[string]string `yaml:"data"`
		StringData map[string]string `yaml:"stringData"`
	}
	o.decode(t, &v)
	out := map[string]string{}
	for k, s := range v.Data {
		out[k] = s
		if o.Kind == "Secret" {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				t.Errorf("%s %s: data.%s is not base64: %v", o.file, o.id(), k, err)
			}
			out[k] = string(b)
		}
	}
	for k, s := range v.StringData {
		out[k] = s
	}
	return out
}

// findByName finds an object by kind and name; rendered ConfigMaps carry a
// hash suffix, which the references carry too.
func findByName(objs []object, kind, name string) (object, bool) {
	for _, o := range objs {
		if o.Kind == kind && o.Metadata.Name == name {
			return o, true
		}
	}
	return object{}, false
}

// checkWorkload checks the worker Deployment and what surrounds it.
// externalSecrets: Secrets are expected to exist in the cluster already.
func checkWorkload(t *testing.T, where string, objs []object, externalSecrets bool) {
	t.Helper()
	secrets := map[string]map[string]string{}
	for _, o := range objs {
		if o.Kind == "Secret" {
			secrets[o.Metadata.Name] = dataOf(t, o)
			for k, v := range secrets[o.Metadata.Name] {
				if !strings.HasPrefix(v, "REPLACE_ME") || strings.Contains(v, "-----BEGIN") {
					t.Errorf("%s: Secret %s key %s holds %q; the repository keeps placeholders only (REPLACE_ME…)",
						where, o.Metadata.Name, k, v)
				}
			}
		}
	}
	var deploys []object
	for _, o := range objs {
		if o.Kind == "Deployment" {
			deploys = append(deploys, o)
		}
	}
	if len(deploys) == 0 {
		t.Fatalf("%s: no Deployment", where)
	}
	workerEnv := readEnvNames(t, workerSources...)
	podLabels := map[string]map[string]string{} // deployment -> pod labels
	portsOf := map[string]map[string]bool{}     // deployment -> port names and numbers
	for _, d := range deploys {
		var dep struct {
			Spec struct {
				Selector struct {
					MatchLabels map[string]string `yaml:"matchLabels"`
				} `yaml:"selector"`
				Template podTemplate `yaml:"template"`
			} `yaml:"spec"`
		}
		d.decode(t, &dep)
		pod := dep.Spec.Template
		name := d.Metadata.Name
		podLabels[name] = pod.Metadata.Labels
		if !subset(dep.Spec.Selector.MatchLabels, pod.Metadata.Labels) || len(dep.Spec.Selector.MatchLabels) == 0 {
			t.Errorf("%s: Deployment %s: selector %v does not match its pod labels %v", where, name, dep.Spec.Selector.MatchLabels, pod.Metadata.Labels)
		}
		if sc := pod.Spec.SecurityContext.RunAsNonRoot; sc == nil || !*sc {
			t.Errorf("%s: Deployment %s: set securityContext.runAsNonRoot: true", where, name)
		}
		volumes := map[string]podVolume{}
		for _, v := range pod.Spec.Volumes {
			volumes[v.Name] = v
		}
		ports := map[string]bool{}
		portsOf[name] = ports
		for _, c := range pod.Spec.Containers {
			cw := where + ": Deployment " + name + " container " + c.Name
			for _, p := range c.Ports {
				ports[p.Name], ports[p.ContainerPort] = true, true
			}
			// Flags: the image's entrypoint is the worker unless command says otherwise.
			bin := "worker"
			args := c.Args
			if len(c.Command) > 0 {
				bin, args = path.Base(c.Command[0]), append(slices.Clone(c.Command[1:]), c.Args...)
			}
			values := checkFlags(t, invocation{where: cw, binary: bin, args: args})
			if _, port, ok := strings.Cut(values["metrics-addr"], ":"); ok && !ports[port] {
				t.Errorf("%s: --metrics-addr %s is not a declared container port", cw, values["metrics-addr"])
			}
			// Probes on the metrics port.
			for _, p := range []struct {
				name, path string
				pr         *probe
			}{{"livenessProbe", "/healthz", c.LivenessProbe}, {"readinessProbe", "/readyz", c.ReadinessProbe}} {
				switch {
				case p.pr == nil || p.pr.HTTPGet == nil:
					t.Errorf("%s: no %s with httpGet %s", cw, p.name, p.path)
				case p.pr.HTTPGet.Path != p.path:
					t.Errorf("%s: %s path %s, want %s", cw, p.name, p.pr.HTTPGet.Path, p.path)
				case !ports[p.pr.HTTPGet.Port]:
					t.Errorf("%s: %s port %q is not a declared container port", cw, p.name, p.pr.HTTPGet.Port)
				}
			}
			if c.StartupProbe != nil && c.StartupProbe.HTTPGet != nil && !ports[c.StartupProbe.HTTPGet.Port] {
				t.Errorf("%s: startupProbe port %q is not a declared container port", cw, c.StartupProbe.HTTPGet.Port)
			}
			if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
				t.Errorf("%s: want requests of cpu and memory and a memory limit, got %+v", cw, c.Resources)
			}
			// Environment: names the code reads, from Secrets that exist.
			var names []string
			envValues := map[string]string{}
			for _, e := range c.Env {
				names = append(names, e.Name)
				envValues[e.Name] = e.Value
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					checkSecretKey(t, cw+" env "+e.Name, secrets, *e.ValueFrom.SecretKeyRef, externalSecrets)
				}
				if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
					r := e.ValueFrom.ConfigMapKeyRef
					if cm, ok := findByName(objs, "ConfigMap", r.Name); !ok && !r.Optional {
						t.Errorf("%s env %s: no ConfigMap %s", cw, e.Name, r.Name)
					} else if ok {
						if _, has := dataOf(t, cm)[r.Key]; !has && !r.Optional {
							t.Errorf("%s env %s: ConfigMap %s has no key %s", cw, e.Name, r.Name, r.Key)
						}
					}
				}
			}
			for _, ef := range c.EnvFrom {
				if r := ef.SecretRef; r != nil {
					if s, ok := secrets[r.Name]; ok {
						for k := range s {
							names = append(names, k)
						}
					} else if !externalSecrets && !r.Optional {
						t.Errorf("%s: envFrom Secret %s does not exist", cw, r.Name)
					}
				}
				if r := ef.ConfigMapRef; r != nil {
					if cm, ok := findByName(objs, "ConfigMap", r.Name); ok {
						for k := range dataOf(t, cm) {
							names = append(names, k)
						}
					} else if !r.Optional {
						t.Errorf("%s: envFrom ConfigMap %s does not exist", cw, r.Name)
					}
				}
			}
			checkEnv(t, cw, names, workerEnv, workerSources)
			// Mounted files: the pipelines file loads; TLS files are keys of
			// the mounted Secret.
			files := mountedFiles(t, cw, c, volumes, objs, secrets, externalSecrets)
			if p, ok := values["pipelines"]; !ok {
				t.Errorf("%s: no --pipelines flag", cw)
			} else if content, ok := files[p]; !ok {
				t.Errorf("%s: --pipelines %s is not a file mounted from a ConfigMap", cw, p)
			} else {
				tmp := filepath.Join(t.TempDir(), "pipelines.yaml")
				if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
				if _, err := config.Load(tmp); err != nil {
					t.Errorf("%s: the mounted %s does not load: %v", cw, p, err)
				}
			}
			for name, v := range envValues {
				if strings.HasPrefix(name, "TEMPORAL_TLS_") && strings.HasSuffix(name, "_PATH") {
					if _, ok := files[v]; !ok {
						t.Errorf("%s: %s=%s is not a file mounted from a Secret or ConfigMap", cw, name, v)
					}
				}
			}
		}
	}
	for _, o := range objs {
		switch o.Kind {
		case "Service":
			var svc struct {
				Spec struct {
					Selector map[string]string `yaml:"selector"`
					Ports    []struct {
						TargetPort string `yaml:"targetPort"`
						Port       string `yaml:"port"`
					} `yaml:"ports"`
				} `yaml:"spec"`
			}
			o.decode(t, &svc)
			dep := matchingDeployment(svc.Spec.Selector, podLabels)
			if dep == "" {
				t.Errorf("%s: Service %s selects no Deployment's pods (%v)", where, o.Metadata.Name, svc.Spec.Selector)
				continue
			}
			for _, p := range svc.Spec.Ports {
				target := cmp.Or(p.TargetPort, p.Port)
				if !portsOf[dep][target] {
					t.Errorf("%s: Service %s targets port %q, which Deployment %s does not declare", where, o.Metadata.Name, target, dep)
				}
			}
		case "PodDisruptionBudget":
			var pdb struct {
				Spec struct {
					Selector struct {
						MatchLabels map[string]string `yaml:"matchLabels"`
					} `yaml:"selector"`
				} `yaml:"spec"`
			}
			o.decode(t, &pdb)
			if matchingDeployment(pdb.Spec.Selector.MatchLabels, podLabels) == "" {
				t.Errorf("%s: PodDisruptionBudget %s selects no Deployment's pods", where, o.Metadata.Name)
			}
		case "HorizontalPodAutoscaler":
			var hpa struct {
				Spec struct {
					ScaleTargetRef struct {
						Kind string `yaml:"kind"`
						Name string `yaml:"name"`
					} `yaml:"scaleTargetRef"`
					MinReplicas int `yaml:"minReplicas"`
					MaxReplicas int `yaml:"maxReplicas"`
				} `yaml:"spec"`
			}
			o.decode(t, &hpa)
			ref := hpa.Spec.ScaleTargetRef
			if _, ok := podLabels[ref.Name]; ref.Kind != "Deployment" || !ok {
				t.Errorf("%s: HorizontalPodAutoscaler %s scales %s/%s, which does not exist", where, o.Metadata.Name, ref.Kind, ref.Name)
			}
			if hpa.Spec.MinReplicas < 2 || hpa.Spec.MaxReplicas < hpa.Spec.MinReplicas {
				t.Errorf("%s: HorizontalPodAutoscaler %s: replicas %d..%d; want at least 2 (a PodDisruptionBudget needs a spare)",
					where, o.Metadata.Name, hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
			}
		}
	}
}

func checkSecretKey(t *testing.T, where string, secrets map[string]map[string]string, r keyRef, external bool) {
	t.Helper()
	s, ok := secrets[r.Name]
	switch {
	case !ok && !external && !r.Optional:
		t.Errorf("%s: Secret %s does not exist", where, r.Name)
	case ok && !r.Optional:
		if _, has := s[r.Key]; !has {
			t.Errorf("%s: Secret %s has no key %s", where, r.Name, r.Key)
		}
	}
}

// mountedFiles returns the files a container sees from ConfigMap and
// Secret volumes: path -> content (Secret contents are placeholders).
func mountedFiles(t *testing.T, where string, c container, volumes map[string]podVolume, objs []object,
	secrets map[string]map[string]string, externalSecrets bool) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			t.Errorf("%s: mounts volume %s, which the pod does not declare", where, m.Name)
			continue
		}
		var data map[string]string
		var items []keyToPath
		switch {
		case v.ConfigMap != nil:
			cm, ok := findByName(objs, "ConfigMap", v.ConfigMap.Name)
			if !ok {
				t.Errorf("%s: volume %s: no ConfigMap %s", where, m.Name, v.ConfigMap.Name)
				continue
			}
			data, items = dataOf(t, cm), v.ConfigMap.Items
		case v.Secret != nil:
			s, ok := secrets[v.Secret.SecretName]
			if !ok {
				if !externalSecrets && !v.Secret.Optional {
					t.Errorf("%s: volume %s: no Secret %s", where, m.Name, v.Secret.SecretName)
				}
				// Managed outside: the files are whatever the items name.
				s = map[string]string{}
				for _, it := range v.Secret.Items {
					s[it.Key] = ""
				}
			}
			data, items = s, v.Secret.Items
		default:
			continue
		}
		if len(items) == 0 {
			for k := range data {
				items = append(items, keyToPath{Key: k, Path: k})
			}
		}
		for _, it := range items {
			content, ok := data[it.Key]
			if !ok && len(data) > 0 {
				t.Errorf("%s: volume %s projects key %s, which its source does not have", where, m.Name, it.Key)
			}
			if m.SubPath != "" {
				if m.SubPath == it.Path {
					files[m.MountPath] = content
				}
				continue
			}
			files[path.Join(m.MountPath, it.Path)] = content
		}
	}
	return files
}

func matchingDeployment(selector map[string]string, podLabels map[string]map[string]string) string {
	for name, labels := range podLabels {
		if len(selector) > 0 && subset(selector, labels) {
			return name
		}
	}
	return ""
}

func subset(a, b map[string]string) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
