// Package presenced has no code of its own. Its test checks the layout
// rules, which the compiler does not, over every .go file of the
// repository, tests and every build tag included:
//
//   - abi/ is the contract a module in any language and the host both build
//     on: it imports only the standard library and protowire.
//   - sdk/ and extensions/ are what a module author imports and writes: they
//     import nothing under internal/. The kit, sdk/sdktest with the packages
//     under it (sdk/sdktest/siptest, the SIP harness), is the one exception:
//     it runs a module in the host, and hands out its own types.
//   - internal/ is the host: it imports neither sdk/ nor extensions/, except
//     the kit, so that the host cannot come to depend on module code; the
//     host's own tests speak SIP through the kit's peer.
//
// Directories named testdata are skipped, as the go command skips them: the
// guest modules in internal/extension/testdata are modules, and import sdk.
package presenced

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const kit = "sdk/sdktest"

// allowed are imports that break a rule today, as "file import", each with
// why. A listed import that is no longer there fails the test too, so that
// the list only shrinks.
var allowed = map[string]bool{}

func TestLayout(t *testing.T) {
	mod := modulePath(t)
	used := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != "." && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		file := filepath.ToSlash(path)
		dir := filepath.ToSlash(filepath.Dir(path))
		for _, spec := range f.Imports {
			imp, err := strconv.Unquote(spec.Path.Value)
			if err != nil {
				return err
			}
			ours := ""
			if imp == mod || strings.HasPrefix(imp, mod+"/") {
				ours = strings.TrimPrefix(strings.TrimPrefix(imp, mod), "/")
			}
			why := rule(dir, imp, ours)
			if why == "" {
				continue
			}
			if allowed[file+" "+ours] {
				used[file+" "+ours] = true
				continue
			}
			t.Errorf("%s imports %s: %s", file, imp, why)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k := range allowed {
		if !used[k] {
			t.Errorf("allowed import %q is gone: drop it from the list", k)
		}
	}
}

// TestKitHandsOutItsOwnTypes checks that no exported name of the kit is
// declared with a type of the host: a module's test that used one would
// need to import internal/ to name it.
func TestKitHandsOutItsOwnTypes(t *testing.T) {
	mod := modulePath(t)
	fset := token.NewFileSet()
	var files []string // every package of the kit: sdktest and those under it
	err := filepath.WalkDir(filepath.FromSlash(kit), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range files {
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		host := map[string]string{} // local name of each internal/ import: its path
		for _, spec := range f.Imports {
			imp, _ := strconv.Unquote(spec.Path.Value)
			if !under(imp, mod+"/internal") {
				continue
			}
			name := imp[strings.LastIndex(imp, "/")+1:]
			if spec.Name != nil {
				name = spec.Name.Name
			}
			host[name] = imp
		}
		// check reports a host type named anywhere in n, the declaration of
		// the exported name.
		check := func(name string, n ast.Node) {
			if n == nil {
				return
			}
			ast.Inspect(n, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok {
					if x, ok := sel.X.(*ast.Ident); ok && host[x.Name] != "" {
						t.Errorf("%s: exported %s is declared with %s.%s of the host", fset.Position(sel.Pos()), name, host[x.Name], sel.Sel.Name)
					}
				}
				return true
			})
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Name.IsExported() && (d.Recv == nil || exportedRecv(d.Recv)) {
					check(d.Name.Name, d.Type)
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if !s.Name.IsExported() {
							continue
						}
						if st, ok := s.Type.(*ast.StructType); ok {
							for _, fl := range st.Fields.List {
								if len(fl.Names) == 0 || fl.Names[0].IsExported() {
									check(s.Name.Name, fl.Type)
								}
							}
							continue
						}
						check(s.Name.Name, s.Type)
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								check(n.Name, s.Type)
								for _, v := range s.Values {
									check(n.Name, v)
								}
							}
						}
					}
				}
			}
		}
	}
}

// exportedRecv reports whether a method's receiver type is exported, so
// that the method is part of the kit's API.
func exportedRecv(recv *ast.FieldList) bool {
	t := recv.List[0].Type
	if star, ok := t.(*ast.StarExpr); ok {
		t = star.X
	}
	if idx, ok := t.(*ast.IndexExpr); ok {
		t = idx.X
	}
	id, ok := t.(*ast.Ident)
	return ok && id.IsExported()
}

// rule says which layout rule a file in dir breaks by importing imp (ours
// is imp within this module, "" for another module's), or "" for none.
func rule(dir, imp, ours string) string {
	switch {
	case under(dir, "abi"):
		if !std(imp) && imp != "google.golang.org/protobuf/encoding/protowire" {
			return "abi imports only the standard library and protowire"
		}
	case (under(dir, "sdk") && !under(dir, kit)) || under(dir, "extensions"):
		if ours != "" && under(ours, "internal") {
			return "module code (sdk/, extensions/) imports nothing of the host (internal/); a test runs a module through the kit, " + kit
		}
	case under(dir, "internal"):
		if ours != "" && (under(ours, "sdk") || under(ours, "extensions")) && !under(ours, kit) {
			return "the host (internal/) imports no module code (sdk/, extensions/) but the kit, " + kit
		}
	}
	return ""
}

// under reports whether the slash path p is dir or inside it.
func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// std reports whether imp is in the standard library, whose import paths
// have no dot in their first element (the go command's own rule).
func std(imp string) bool {
	first, _, _ := strings.Cut(imp, "/")
	return !strings.Contains(first, ".")
}

func modulePath(t *testing.T) string {
	t.Helper()
	f, err := os.Open("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if mod, ok := strings.CutPrefix(strings.TrimSpace(s.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(mod), `"`)
		}
	}
	t.Fatal("go.mod has no module line")
	return ""
}
