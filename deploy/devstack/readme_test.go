package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sessionflow/sessionflow/config"
)

// The README's configuration reference must stay true to the code: every
// key of the pipelines file, the worker's flags exactly as --help prints
// them, every starter command, and the kcat command the smoke runs.

const readmePath = "../../README.md"

func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section returns the README text between <!-- name:begin --> and
// <!-- name:end -->.
func section(t *testing.T, name string) string {
	t.Helper()
	s := readme(t)
	begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("README.md has no %s … %s section", begin, end)
	}
	return s[i+len(begin) : j]
}

// yamlKeys lists the dotted YAML keys of a struct type, nested structs
// expanded (durations and other scalars are leaves).
func yamlKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct {
			keys = append(keys, yamlKeys(f.Type, prefix+name+".")...)
			continue
		}
		keys = append(keys, prefix+name)
	}
	return keys
}

func TestReadmePipelinesKeys(t *testing.T) {
	file := reflect.TypeFor[config.File]()
	if got := yamlKeys(file, ""); !slices.Equal(got, []string{"pipelines"}) {
		t.Fatalf("config.File has keys %v; this test expects only the pipelines list", got)
	}
	if !strings.Contains(readme(t), "`pipelines:`") {
		t.Error("README.md does not name the top-level `pipelines:` list")
	}
	want := yamlKeys(reflect.TypeFor[config.Pipeline](), "")
	table := section(t, "pipelines-keys")
	var listed []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)` \\|").FindAllStringSubmatch(table, -1) {
		listed = append(listed, m[1])
	}
	for _, k := range want {
		if !slices.Contains(listed, k) {
			t.Errorf("README.md's pipelines reference has no row for `%s` (a key of config.Pipeline)", k)
		}
	}
	for _, k := range listed {
		if !slices.Contains(want, k) {
			t.Errorf("README.md's pipelines reference lists `%s`, which config.Pipeline does not have (keys: %v)", k, want)
		}
	}
	// The keys documented must load: one pipeline setting every one of them.
	doc := `pipelines:
  - name: all-keys
    profile: clickstream
    topic: t
    rules: {key_field: k, time_field: ts, id_field: id, page_field: p, status_field: s, soc_field: c,
      time_unit: s, start_marker: a=b, end_marker: a=c, gap: 1m, max_duration: 1h, break_tolerance: 1m,
      min_duration: 1m, lateness: 1m, expiry_warning: 5m}
    output: {prefix: x, buckets: 2, flush: {max_records: 10, max_bytes: 1000, max_age: 1s}}
    notify: {session_closed: true, expiry_warning: true, break_started: true}
    max_wait: 5s
`
	if _, err := config.Parse([]byte(doc)); err != nil {
		t.Errorf("a pipeline with every documented key does not load: %v", err)
	}
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// built returns a freshly built binary of the module (worker or starter).
func built(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "devstack-readme-test"); buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", buildDir+string(filepath.Separator), "./worker", "./starter")
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./worker ./starter: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, name)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// help runs `bin args... --help` without the environment variables that
// change the defaults it prints.
func help(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(built(t, bin), append(slices.Clone(args), "--help")...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v --help: %v\n%s", bin, args, err, out)
	}
	return string(out)
}

func TestReadmeWorkerFlags(t *testing.T) {
	out := help(t, "worker")
	i := strings.Index(out, "Flags:\n")
	if i < 0 {
		t.Fatalf("worker --help has no Flags: section:\n%s", out)
	}
	flags := out[i:]
	block := section(t, "worker-help")
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?(--[a-z0-9-]+)`).FindAllStringSubmatch(flags, -1) {
		if !strings.Contains(block, m[1]+" ") {
			t.Errorf("README.md's worker reference does not list %s", m[1])
		}
	}
	if want := "\n```\n" + flags + "```\n"; block != want {
		t.Errorf("README.md's worker-help block differs from `worker --help`; replace its contents with:\n%s", flags)
	}
}

func TestReadmeStarterCommands(t *testing.T) {
	table := section(t, "starter-commands")
	var walk func(path []string)
	walk = func(path []string) {
		out := help(t, "starter", path...)
		i := strings.Index(out, "Available Commands:\n")
		if i < 0 { // a leaf
			if cmd := "`starter " + strings.Join(path, " ") + "`"; !strings.Contains(table, cmd) {
				t.Errorf("README.md's starter reference has no row for %s", cmd)
			}
			return
		}
		for _, line := range strings.Split(out[i+len("Available Commands:\n"):], "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				break
			}
			if f[0] != "help" && f[0] != "completion" {
				walk(append(slices.Clone(path), f[0]))
			}
		}
	}
	walk(nil)
}

// TestReadmeKcat: the README's kcat command is the one the smoke runs
// against the dev broker and the clickstream pipeline's topic.
func TestReadmeKcat(t *testing.T) {
	f, err := config.Parse(pipelinesYAML)
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.Find("clickstream")
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.SessionRules()
	if err != nil {
		t.Fatal(err)
	}
	s := readme(t)
	want := fmt.Sprintf("| kcat -P -b %s -t %s -K:", kafkaAddr, p.Topic)
	i := strings.Index(s, want)
	if i < 0 {
		t.Fatalf("README.md does not show the smoke's kcat command %q", want)
	}
	line := s[strings.LastIndex(s[:i], "\n")+1 : i]
	if !strings.HasPrefix(line, "echo 'me:{") {
		t.Errorf("README.md's kcat example %q: want echo 'me:{…}' (key me, -K: splits key:value)", line)
	}
	for _, field := range []string{r.KeyField, r.TimeField, r.PageField} {
		if !strings.Contains(line, fmt.Sprintf("%q:", field)) {
			t.Errorf("README.md's kcat example %q does not set the clickstream field %q", line, field)
		}
	}
	if !strings.Contains(s, "make dev") || !strings.Contains(s, "make test") {
		t.Error("README.md must state the two commands, make dev and make test")
	}
}
