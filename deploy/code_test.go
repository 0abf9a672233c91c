package deploy_test

// What the code really reads: the environment names in the Go sources of
// the binaries, and the flags of the built binaries. The compose and
// Kubernetes tests check the deployment files against these facts, never
// against lists kept by hand.

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// root is the module root: the tests run in deploy/.
const root = ".."

// The sources each binary is built from, as far as they may read the
// environment (internal/ holds shared flag packages).
var (
	workerSources    = []string{"worker", "ingest", "internal"}
	generatorSources = []string{"starter", "generate", "internal"}
)

// runtimeEnv are read by the Go runtime itself.
var runtimeEnv = map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true, "GOGC": true, "GODEBUG": true, "GOTRACEBACK": true}

const envconfigModule = "go.temporal.io/sdk/contrib/envconfig"

var envNameRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// envNames is the set of environment variable names a binary's sources
// read, and the prefixes it reads every name of (TEMPORAL_GRPC_META_).
type envNames struct {
	names    map[string]bool
	prefixes []string
}

func (e envNames) reads(name string) bool {
	if e.names[name] || runtimeEnv[name] {
		return true
	}
	for _, p := range e.prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// readEnvNames scans the Go sources under dirs (relative to the module
// root; a missing dir is skipped: ingest/ may not exist yet) for the string
// literals passed to functions whose qualified name mentions env —
// os.Getenv, os.LookupEnv, env.Or("NAME", …), env.First("A", "B"), and
// First("A", "B") within package env — and, if they import the Temporal
// envconfig package, adds the TEMPORAL_* names it reads.
func readEnvNames(t *testing.T, dirs ...string) envNames {
	t.Helper()
	e := envNames{names: map[string]bool{}}
	usesEnvconfig := false
	for _, dir := range dirs {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return filepath.SkipDir
				}
				return err
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
			if err != nil {
				// A file someone is half-way through writing: the build of
				// the binaries reports it properly.
				t.Logf("skipping %s: %v", path, err)
				return nil
			}
			for _, imp := range f.Imports {
				usesEnvconfig = usesEnvconfig || imp.Path.Value == strconv.Quote(envconfigModule)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || !strings.Contains(strings.ToLower(calleeName(f.Name.Name, call.Fun)), "env") {
					return true
				}
				for _, arg := range call.Args {
					if s, ok := stringLit(arg); ok && envNameRE.MatchString(s) {
						e.names[s] = true
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if usesEnvconfig {
		for name := range temporalEnv(t) {
			if strings.HasSuffix(name, "_") {
				e.prefixes = append(e.prefixes, name)
			} else {
				e.names[name] = true
			}
		}
	}
	return e
}

// calleeName is the called function's name qualified by its package: pkg
// (the file's own package) for a plain name, the selector's left side for
// pkg.Name or value.Method.
func calleeName(pkg string, fun ast.Expr) string {
	switch f := fun.(type) {
	case *ast.Ident:
		return pkg + "." + f.Name
	case *ast.SelectorExpr:
		if x, ok := f.X.(*ast.Ident); ok {
			return x.Name + "." + f.Sel.Name
		}
		return f.Sel.Name
	}
	return ""
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

var temporalEnvOnce = sync.OnceValues(func() (map[string]bool, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", envconfigModule).Output()
	if err != nil {
		return nil, fmt.Errorf("go list -m %s: %w", envconfigModule, err)
	}
	dir := strings.TrimSpace(string(out))
	names := map[string]bool{}
	re := regexp.MustCompile(`"(TEMPORAL_[A-Z0-9_]*)"`)
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			names[m[1]] = true
		}
	}
	if !names["TEMPORAL_ADDRESS"] {
		return nil, fmt.Errorf("found no TEMPORAL_ADDRESS in %s", dir)
	}
	return names, nil
})

// temporalEnv is the TEMPORAL_* set the envconfig package reads, from its
// source in the module cache.
func temporalEnv(t *testing.T) map[string]bool {
	t.Helper()
	names, err := temporalEnvOnce()
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// binDir holds the worker and starter binaries, built once per test run.
var (
	binDir   string
	binOnce  sync.Once
	binErr   error
	helpMu   sync.Mutex
	helpSeen = map[string]map[string]flagInfo{}
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binary returns the path of a freshly built binary of the module
// (worker or starter).
func binary(t *testing.T, name string) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "sessionflow-deploy-test"); binErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator), "./worker", "./starter")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./worker ./starter: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, name)
}

// flagInfo is one flag as --help lists it.
type flagInfo struct {
	Default string // as "(default ...)" shows it, unquoted; "" if none shown
	Usage   string
}

var (
	flagLineRE = regexp.MustCompile(`^\s+(?:-[A-Za-z0-9], )?--([a-z0-9][a-z0-9-]*)(?:\s\S+)?\s{2,}(.*)$`)
	defaultRE  = regexp.MustCompile(`\(default (?:"([^"]*)"|([^)]*))\)`)
)

// flags runs `bin args... --help` and returns the flags it lists.
func flags(t *testing.T, bin string, args ...string) map[string]flagInfo {
	t.Helper()
	path := binary(t, bin)
	key := strings.Join(append([]string{bin}, args...), " ")
	helpMu.Lock()
	defer helpMu.Unlock()
	if f, ok := helpSeen[key]; ok {
		return f
	}
	var out bytes.Buffer
	cmd := exec.Command(path, append(slices.Clone(args), "--help")...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s --help: %v\n%s", key, err, out.String())
	}
	found := map[string]flagInfo{}
	for _, line := range strings.Split(out.String(), "\n") {
		m := flagLineRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		fi := flagInfo{Usage: m[2]}
		if d := defaultRE.FindStringSubmatch(m[2]); d != nil {
			fi.Default = d[1] + d[2]
		}
		found[m[1]] = fi
	}
	if _, ok := found["help"]; !ok {
		t.Fatalf("%s --help lists no --help flag; cannot read its flags:\n%s", key, out.String())
	}
	helpSeen[key] = found
	return found
}

// invocation is a command line of one of the binaries in a deployment file.
type invocation struct {
	where  string // for messages: "docker-compose.yml service worker"
	binary string // worker or starter
	args   []string
}

// checkFlags checks that every flag of an invocation is one the binary
// (and subcommand) really has, and returns the flag values set.
func checkFlags(t *testing.T, inv invocation) map[string]string {
	t.Helper()
	var sub []string
	args := inv.args
	if inv.binary == "starter" {
		sub = subcommand(args)
		args = args[len(sub):]
		if len(sub) == 0 {
			t.Errorf("%s: starter needs a subcommand, got %q", inv.where, inv.args)
			return nil
		}
	}
	known := flags(t, inv.binary, sub...)
	values := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			t.Errorf("%s: argument %q is not a --flag (only long flags are checked; use --name value)", inv.where, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
			value, i = args[i+1], i+1
		}
		if _, ok := known[name]; !ok {
			t.Errorf("%s: `%s` has no flag --%s (it has: %s)", inv.where,
				strings.Join(append([]string{inv.binary}, sub...), " "), name, flagList(known))
		}
		values[name] = value // checked on, whether known or not
	}
	return values
}

// subcommand returns the leading arguments that are not flags: the
// starter's subcommand path.
func subcommand(args []string) []string {
	n := 0
	for n < len(args) && !strings.HasPrefix(args[n], "-") {
		n++
	}
	return args[:n]
}

func flagList(known map[string]flagInfo) string {
	var names []string
	for n := range known {
		names = append(names, "--"+n)
	}
	slices.Sort(names)
	return strings.Join(names, " ")
}

// checkEnv checks that every name set is one the sources read.
func checkEnv(t *testing.T, where string, set []string, read envNames, sources []string) {
	t.Helper()
	for _, name := range set {
		if !read.reads(name) {
			t.Errorf("%s sets %s, which no code in %s reads (nor the Temporal envconfig or the Go runtime)",
				where, name, strings.Join(sources, ", "))
		}
	}
}

func TestEnvScanFindsTheWorkersNames(t *testing.T) {
	e := readEnvNames(t, workerSources...)
	for _, name := range []string{"S3_ENDPOINT", "S3_ACCESS_KEY_ID", "MINIO_ROOT_USER", "S3_TLS", "TEMPORAL_ADDRESS", "TEMPORAL_TLS_CLIENT_CERT_PATH"} {
		if !e.reads(name) {
			t.Errorf("the scan of %v misses %s: it would wrongly reject the deployment files", workerSources, name)
		}
	}
	if e.reads("NOT_READ_ANYWHERE") {
		t.Error("the scan accepts any name")
	}
}
