package deploy_test

// docker-compose.yml and the Dockerfile cannot be run here (no images can be
// pulled), so these tests keep them correct by reading them: the services
// and their images, published ports, dependency order, and — against the
// code and the built binaries — every environment name and command flag of
// the worker and the generator.

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"gopkg.in/yaml.v3"

	"github.com/sessionflow/sessionflow/config"
	"github.com/sessionflow/sessionflow/workflows"
)

type composeFile struct {
	Services map[string]*composeService `yaml:"services"`
}

type composeService struct {
	Image       string         `yaml:"image"`
	Build       *composeBuild  `yaml:"build"`
	Entrypoint  words          `yaml:"entrypoint"`
	Command     words          `yaml:"command"`
	Environment env            `yaml:"environment"`
	Ports       []port         `yaml:"ports"`
	Volumes     []volume       `yaml:"volumes"`
	DependsOn   dependsOn      `yaml:"depends_on"`
	Healthcheck map[string]any `yaml:"healthcheck"`
	Restart     string         `yaml:"restart"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

func (b *composeBuild) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		b.Context = n.Value
		return nil
	}
	type plain composeBuild
	return n.Decode((*plain)(b))
}

// words is a command or entrypoint: a list, or a string split on blanks.
type words []string

func (w *words) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*w = strings.Fields(n.Value)
		return nil
	}
	var l []string
	err := n.Decode(&l)
	*w = l
	return err
}

// env is an environment block: a map, or a list of NAME=value.
type env map[string]string

func (e *env) UnmarshalYAML(n *yaml.Node) error {
	*e = env{}
	if n.Kind == yaml.MappingNode {
		var m map[string]*string
		if err := n.Decode(&m); err != nil {
			return err
		}
		for k, v := range m {
			(*e)[k] = ""
			if v != nil {
				(*e)[k] = *v
			}
		}
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	for _, kv := range l {
		k, v, _ := strings.Cut(kv, "=")
		(*e)[k] = v
	}
	return nil
}

func (e env) names() []string {
	var n []string
	for k := range e {
		n = append(n, k)
	}
	slices.Sort(n)
	return n
}

// port is a published port: "host:container", "ip:host:container",
// "container" (not published), or the long form.
type port struct{ Host, Container string }

func (p *port) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		var long struct {
			Target    any `yaml:"target"`
			Published any `yaml:"published"`
		}
		if err := n.Decode(&long); err != nil {
			return err
		}
		p.Container, p.Host = fmt.Sprint(long.Target), ""
		if long.Published != nil {
			p.Host = fmt.Sprint(long.Published)
		}
		return nil
	}
	parts := strings.Split(strings.Split(n.Value, "/")[0], ":")
	p.Container = parts[len(parts)-1]
	if len(parts) >= 2 {
		p.Host = parts[len(parts)-2]
	}
	return nil
}

// volume is "source:target[:mode]" or the long form.
type volume struct{ Source, Target string }

func (v *volume) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		var long struct{ Source, Target string }
		err := n.Decode(&long)
		v.Source, v.Target = long.Source, long.Target
		return err
	}
	parts := strings.Split(n.Value, ":")
	if len(parts) == 1 {
		v.Target = parts[0]
		return nil
	}
	v.Source, v.Target = parts[0], parts[1]
	return nil
}

// dependsOn is a list of services or a map of service to condition.
type dependsOn map[string]string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	*d = dependsOn{}
	if n.Kind == yaml.SequenceNode {
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		for _, s := range l {
			(*d)[s] = "service_started"
		}
		return nil
	}
	var m map[string]struct{ Condition string }
	if err := n.Decode(&m); err != nil {
		return err
	}
	for s, c := range m {
		(*d)[s] = c.Condition
		if c.Condition == "" {
			(*d)[s] = "service_started"
		}
	}
	return nil
}

func loadCompose(t *testing.T) *composeFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return &c
}

// The services of the stack and the images they must run.
var wantServices = map[string][]string{
	"postgresql":  {"postgres:"},
	"temporal":    {"temporalio/auto-setup:", "temporalio/server:"},
	"temporal-ui": {"temporalio/ui:"},
	"kafka":       {"apache/kafka:", "bitnami/kafka:"},
	"minio":       {"minio/minio:"},
	"minio-init":  {"minio/mc:"},
	"worker":      {""},
	"generator":   {""},
}

func TestComposeServices(t *testing.T) {
	c := loadCompose(t)
	for name, images := range wantServices {
		s, ok := c.Services[name]
		if !ok {
			t.Errorf("no service %q", name)
			continue
		}
		if !slices.ContainsFunc(images, func(p string) bool { return strings.HasPrefix(s.Image, p) }) {
			t.Errorf("service %s runs image %q, want one of %q", name, s.Image, images)
		}
		if images[0] != "" && strings.HasSuffix(s.Image, ":latest") {
			t.Errorf("service %s: pin the image version instead of %q", name, s.Image)
		}
	}
	for name, s := range c.Services {
		if strings.Contains(s.Image, "zookeeper") {
			t.Errorf("service %s runs ZooKeeper; Kafka must run in KRaft mode", name)
		}
	}
	if k := c.Services["kafka"]; k != nil {
		roles := k.Environment["KAFKA_PROCESS_ROLES"] + k.Environment["KAFKA_CFG_PROCESS_ROLES"]
		if !strings.Contains(roles, "controller") || !strings.Contains(roles, "broker") {
			t.Errorf("kafka: process roles %q, want broker,controller (KRaft)", roles)
		}
	}
	if tp := c.Services["temporal"]; tp != nil {
		if db := tp.Environment["DB"]; !strings.HasPrefix(db, "postgres") {
			t.Errorf("temporal: DB=%q, want PostgreSQL persistence (postgres12)", db)
		}
		if seed := c.Services[tp.Environment["POSTGRES_SEEDS"]]; seed == nil || !strings.HasPrefix(seed.Image, "postgres:") {
			t.Errorf("temporal: POSTGRES_SEEDS=%q is not the PostgreSQL service", tp.Environment["POSTGRES_SEEDS"])
		}
	}
	for _, name := range []string{"worker", "generator"} {
		s := c.Services[name]
		if s == nil {
			continue
		}
		if s.Build == nil || filepath.Clean(s.Build.Context) != "." {
			t.Errorf("service %s is not built from the project (build: context .)", name)
			continue
		}
		df := s.Build.Dockerfile
		if df == "" {
			df = "Dockerfile"
		}
		if _, err := os.Stat(filepath.Join(root, df)); err != nil {
			t.Errorf("service %s: %v", name, err)
		}
	}
}

func TestComposePorts(t *testing.T) {
	c := loadCompose(t)
	published := map[string]string{} // host port -> service
	for name, s := range c.Services {
		for _, p := range s.Ports {
			if p.Host == "" {
				continue
			}
			if other, dup := published[p.Host]; dup {
				t.Errorf("host port %s published by both %s and %s", p.Host, other, name)
			}
			published[p.Host] = name
		}
	}
	for _, want := range []struct {
		service string
		host    []string // any of
		what    string
	}{
		{"temporal", []string{"7233"}, "Temporal gRPC"},
		{"temporal-ui", []string{"8233", "8080"}, "Temporal UI"},
		{"kafka", []string{"9092"}, "Kafka"},
		{"minio", []string{"9000"}, "MinIO S3 API"},
		{"minio", []string{"9001"}, "MinIO console"},
	} {
		if !slices.ContainsFunc(want.host, func(h string) bool { return published[h] == want.service }) {
			t.Errorf("%s: service %s does not publish host port %s", want.what, want.service, strings.Join(want.host, " or "))
		}
	}
}

func TestComposeDependencies(t *testing.T) {
	c := loadCompose(t)
	for name, s := range c.Services {
		for dep, cond := range s.DependsOn {
			d, ok := c.Services[dep]
			switch {
			case !ok:
				t.Errorf("%s depends on %s, which is no service", name, dep)
			case cond == "service_healthy" && d.Healthcheck == nil:
				t.Errorf("%s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
			case cond == "service_completed_successfully" && d.Restart != "no" && d.Restart != "":
				t.Errorf("%s waits for %s to complete, but %s restarts (%s)", name, dep, dep, d.Restart)
			case cond != "service_started" && cond != "service_healthy" && cond != "service_completed_successfully":
				t.Errorf("%s depends on %s with unknown condition %q", name, dep, cond)
			}
		}
	}
	// The start order: every service after what it needs (transitively),
	// and no cycle.
	for _, want := range []struct {
		service string
		after   []string
	}{
		{"temporal", []string{"postgresql"}},
		{"temporal-ui", []string{"temporal"}},
		{"minio-init", []string{"minio"}},
		{"worker", []string{"temporal", "kafka", "minio", "minio-init"}},
		{"generator", []string{"kafka"}},
	} {
		deps, cycle := transitiveDeps(c, want.service)
		if cycle != "" {
			t.Errorf("dependency cycle through %s", cycle)
			continue
		}
		for _, a := range want.after {
			if !deps[a] {
				t.Errorf("%s does not depend on %s (directly or through others)", want.service, a)
			}
		}
	}
}

func transitiveDeps(c *composeFile, from string) (map[string]bool, string) {
	seen, onPath := map[string]bool{}, map[string]bool{}
	var cycle string
	var walk func(string)
	walk = func(s string) {
		if onPath[s] {
			cycle = s
			return
		}
		svc := c.Services[s]
		if svc == nil || cycle != "" {
			return
		}
		onPath[s] = true
		for d := range svc.DependsOn {
			seen[d] = true
			walk(d)
		}
		onPath[s] = false
	}
	walk(from)
	return seen, cycle
}

// composeBinaries are the services that run the project's binaries, with
// the sources whose environment reads they may rely on.
var composeBinaries = map[string][]string{"worker": workerSources, "generator": generatorSources}

func TestComposeEnvironment(t *testing.T) {
	c := loadCompose(t)
	for name, sources := range composeBinaries {
		s := c.Services[name]
		if s == nil {
			t.Errorf("no service %s", name)
			continue
		}
		checkEnv(t, "docker-compose.yml service "+name, s.Environment.names(), readEnvNames(t, sources...), sources)
		// Addresses name services of the stack.
		for _, k := range []string{"TEMPORAL_ADDRESS", "KAFKA_BROKERS", "S3_ENDPOINT", "SESSIONFLOW_WEBHOOK_URL"} {
			v, ok := s.Environment[k]
			if !ok {
				continue
			}
			for _, host := range hostsOf(v) {
				if c.Services[host] == nil {
					t.Errorf("service %s: %s=%s names host %q, which is no service", name, k, v, host)
				}
			}
		}
		if b, ok := s.Environment["KAFKA_BROKERS"]; ok && c.Services["kafka"] != nil {
			adv := c.Services["kafka"].Environment["KAFKA_ADVERTISED_LISTENERS"] + c.Services["kafka"].Environment["KAFKA_CFG_ADVERTISED_LISTENERS"]
			for _, broker := range strings.Split(b, ",") {
				if !strings.Contains(adv, "//"+broker) {
					t.Errorf("service %s: broker %s is not among kafka's advertised listeners %q", name, broker, adv)
				}
			}
		}
	}
	w := c.Services["worker"]
	if w == nil {
		return
	}
	for _, k := range []string{"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "S3_ENDPOINT", "S3_BUCKET", "S3_ACCESS_KEY_ID",
		"S3_SECRET_ACCESS_KEY", "KAFKA_BROKERS", "SESSIONFLOW_WEBHOOK_URL"} {
		if _, ok := w.Environment[k]; !ok {
			t.Errorf("worker: %s not set", k)
		}
	}
	if m := c.Services["minio"]; m != nil && (w.Environment["S3_ACCESS_KEY_ID"] != m.Environment["MINIO_ROOT_USER"] ||
		w.Environment["S3_SECRET_ACCESS_KEY"] != m.Environment["MINIO_ROOT_PASSWORD"]) {
		t.Error("worker: the S3 credentials are not MinIO's root user and password")
	}
	if mi := c.Services["minio-init"]; mi != nil {
		script := strings.Join(append(slices.Clone(mi.Entrypoint), mi.Command...), " ")
		if bucket := w.Environment["S3_BUCKET"]; !strings.Contains(script, "/"+bucket) || !strings.Contains(script, "mb") {
			t.Errorf("minio-init does not create the worker's bucket %q: %s", bucket, script)
		}
	}
}

// hostsOf returns the host names in "h:p,h:p" or a URL.
func hostsOf(v string) []string {
	if u, err := url.Parse(v); err == nil && u.Host != "" {
		return []string{u.Hostname()}
	}
	var hosts []string
	for _, hp := range strings.Split(v, ",") {
		h, _, _ := strings.Cut(strings.TrimSpace(hp), ":")
		hosts = append(hosts, h)
	}
	return hosts
}

// composeInvocation is the command line a service runs: its entrypoint
// names the binary, its command holds the arguments.
func composeInvocation(t *testing.T, name string, s *composeService) invocation {
	t.Helper()
	if len(s.Entrypoint) != 1 {
		t.Fatalf("service %s: want the entrypoint to be the binary alone (e.g. [/usr/local/bin/worker]), got %q", name, s.Entrypoint)
	}
	bin := filepath.Base(s.Entrypoint[0])
	if bin != "worker" && bin != "starter" {
		t.Fatalf("service %s: entrypoint %s is neither worker nor starter", name, s.Entrypoint[0])
	}
	return invocation{where: "docker-compose.yml service " + name, binary: bin, args: s.Command}
}

func TestComposeCommands(t *testing.T) {
	c := loadCompose(t)
	w, g := c.Services["worker"], c.Services["generator"]
	if w == nil || g == nil {
		t.Fatal("no worker or generator service")
	}
	values := checkFlags(t, composeInvocation(t, "worker", w))

	// The pipelines file: a mounted file of the repository that loads.
	path, ok := values["pipelines"]
	if !ok {
		t.Fatal("worker: no --pipelines flag")
	}
	var topics []string
	found := false
	for _, v := range w.Volumes {
		if v.Target != path {
			continue
		}
		found = true
		f, err := config.Load(filepath.Join(root, v.Source))
		if err != nil {
			t.Fatalf("worker: the mounted pipelines file: %v", err)
		}
		for _, p := range f.Pipelines {
			topics = append(topics, p.Topic)
		}
	}
	if !found {
		t.Fatalf("worker: --pipelines %s is not a mounted file (volumes %v)", path, w.Volumes)
	}
	if ki := c.Services["kafka-init"]; ki != nil {
		script := strings.Fields(strings.NewReplacer(`"`, " ", ";", " ").Replace(strings.Join(ki.Command, " ")))
		for _, topic := range topics {
			if !slices.Contains(script, topic) {
				t.Errorf("kafka-init does not create the topic %q of the pipelines file", topic)
			}
		}
	}

	// The generator: real flags, and it writes to the pipelines' topics.
	inv := composeInvocation(t, "generator", g)
	gv := checkFlags(t, inv)
	for name, fi := range flags(t, "starter", subcommand(inv.args)...) {
		if !strings.HasSuffix(name, "topic") {
			continue
		}
		topic, set := gv[name]
		if !set {
			topic = fi.Default
		}
		if !slices.Contains(topics, topic) {
			t.Errorf("generator writes --%s %q, which no pipeline reads (topics %q)", name, topic, topics)
		}
	}
}

// The search attributes that temporal-init registers must be the ones the
// workflows publish, with their types.
func TestComposeSearchAttributes(t *testing.T) {
	c := loadCompose(t)
	ti := c.Services["temporal-init"]
	if ti == nil {
		t.Skip("no temporal-init service: the worker registers the search attributes itself")
	}
	script := strings.Join(ti.Command, " ")
	got := map[string]string{}
	for _, m := range regexp.MustCompile(`\b([A-Za-z]+):(Keyword|Text|Int|Double|Bool|Datetime|KeywordList)\b`).FindAllStringSubmatch(script, -1) {
		got[m[1]] = m[2]
	}
	want := map[string]string{}
	for _, k := range []temporal.SearchAttributeKey{workflows.AttrSessionKey, workflows.AttrSessionID, workflows.AttrPipeline,
		workflows.AttrSessionState, workflows.AttrCloseReason, workflows.AttrSessionStart, workflows.AttrLastEventTime, workflows.AttrEventCount} {
		want[k.GetName()] = cliType(k.GetValueType())
	}
	for name, typ := range want {
		if got[name] != typ {
			t.Errorf("temporal-init registers %s as %q, want %q", name, got[name], typ)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("temporal-init registers %s, which no workflow uses", name)
		}
	}
}

func cliType(t enums.IndexedValueType) string {
	return map[enums.IndexedValueType]string{
		enums.INDEXED_VALUE_TYPE_KEYWORD: "Keyword", enums.INDEXED_VALUE_TYPE_TEXT: "Text",
		enums.INDEXED_VALUE_TYPE_INT: "Int", enums.INDEXED_VALUE_TYPE_DOUBLE: "Double",
		enums.INDEXED_VALUE_TYPE_BOOL: "Bool", enums.INDEXED_VALUE_TYPE_DATETIME: "Datetime",
		enums.INDEXED_VALUE_TYPE_KEYWORD_LIST: "KeywordList",
	}[t]
}

// TestDockerfile reads the Dockerfile: a Go 1.26 build of both binaries, a
// non-root runtime stage, and the binaries where the services expect them.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]string // instructions per stage, continuation lines joined
	var cur []string
	for _, line := range strings.Split(strings.ReplaceAll(string(data), "\\\n", " "), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(strings.ToUpper(line), "FROM ") {
			if cur != nil {
				stages = append(stages, cur)
			}
			cur = nil
		}
		cur = append(cur, line)
	}
	stages = append(stages, cur)
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage Dockerfile, got %d stage(s)", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	if !strings.HasPrefix(build[0], "FROM golang:1.26") {
		t.Errorf("build stage %q, want FROM golang:1.26", build[0])
	}
	buildCmd := strings.Join(build, "\n")
	for _, pkg := range []string{"./worker", "./starter"} {
		if !regexp.MustCompile(`go build[^\n]*` + regexp.QuoteMeta(pkg) + `\b`).MatchString(buildCmd) {
			t.Errorf("the build stage does not go build %s", pkg)
		}
	}
	if !strings.Contains(final[0], "distroless") && !strings.Contains(final[0], "debian") {
		t.Errorf("runtime stage %q, want distroless or debian-slim", final[0])
	}
	user := ""
	for _, ins := range final {
		if f := strings.Fields(ins); strings.EqualFold(f[0], "USER") && len(f) > 1 {
			user = f[1]
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "root" || u == "0" {
		t.Errorf("the runtime stage runs as %q; want a non-root USER", user)
	}
	final0 := strings.Join(final, "\n")
	c := loadCompose(t)
	for name := range composeBinaries {
		if s := c.Services[name]; s != nil && len(s.Entrypoint) == 1 {
			dir, bin := filepath.Split(s.Entrypoint[0])
			if !regexp.MustCompile(`COPY --from=\S+ .*\b` + bin + `\b.* ` + regexp.QuoteMeta(dir)).MatchString(final0) {
				t.Errorf("service %s runs %s, which the Dockerfile does not copy there", name, s.Entrypoint[0])
			}
		}
	}
}
