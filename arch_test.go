package brokkr

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/brokkr/brokkr"

type goPackage struct {
	ImportPath string
	Doc        string
	Imports    []string
	Standard   bool
}

func listPackages(t *testing.T) []goPackage {
	t.Helper()
	out, err := exec.Command("go", "list", "-e", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []goPackage
	for {
		var p goPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 3 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func isStd(path string) bool { return !strings.Contains(strings.Split(path, "/")[0], ".") }

func rel(path string) string { return strings.TrimPrefix(strings.TrimPrefix(path, module), "/") }

func under(path, dir string) bool { r := rel(path); return r == dir || strings.HasPrefix(r, dir+"/") }

// backendLibs are the client libraries of coordination backends and the
// plugin host; only their own packages and cmd may import them.
var backendLibs = []string{"go.etcd.io/", "github.com/go-zookeeper/", "github.com/hashicorp/memberlist", "github.com/hashicorp/go-plugin"}

// TestImportArrows checks DESIGN.md's arrows: cmd -> core -> (segment,
// netio, coord, plugins); core never imports a backend; segment knows only
// the standard library and x/sys; nothing imports cmd.
func TestImportArrows(t *testing.T) {
	for _, p := range listPackages(t) {
		for _, imp := range p.Imports {
			internal := strings.HasPrefix(imp, module+"/") || imp == module
			switch {
			case under(p.ImportPath, "segment"):
				if !isStd(imp) && !strings.HasPrefix(imp, "golang.org/x/sys/") && !under(imp, "segment") {
					t.Errorf("%s imports %s: segment may import only the standard library and x/sys", rel(p.ImportPath), imp)
				}
			case under(p.ImportPath, "core"):
				if internal && !(under(imp, "core") || under(imp, "segment") || under(imp, "netio") || rel(imp) == "coord" || rel(imp) == "plugins") {
					t.Errorf("%s imports %s: core may import segment, netio, and the coord and plugins interfaces only", rel(p.ImportPath), rel(imp))
				}
				for _, lib := range backendLibs {
					if strings.HasPrefix(imp, lib) {
						t.Errorf("%s imports %s: core never imports a backend library", rel(p.ImportPath), imp)
					}
				}
			case under(p.ImportPath, "netio"):
				if internal && !under(imp, "netio") {
					t.Errorf("%s imports %s: netio imports no other Brokkr package", rel(p.ImportPath), rel(imp))
				}
			case under(p.ImportPath, "coord"):
				if internal && !under(imp, "coord") {
					t.Errorf("%s imports %s: coord packages import only coord", rel(p.ImportPath), rel(imp))
				}
			}
			if internal && under(imp, "cmd") {
				t.Errorf("%s imports %s: nothing imports cmd", rel(p.ImportPath), rel(imp))
			}
		}
	}
}

// TestEveryPackageHasADoc fails on a package without a doc comment.
func TestEveryPackageHasADoc(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no doc comment", rel(p.ImportPath))
		}
	}
}
