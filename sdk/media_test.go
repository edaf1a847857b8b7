package sdk

import (
	"errors"
	"testing"
)

func TestMediaType(t *testing.T) {
	for in, want := range map[string]string{
		"application/pidf+xml":                   "application/pidf+xml",
		" Application/PIDF+XML ; charset=UTF-8 ": "application/pidf+xml",
		"":                                       "",
	} {
		if got := MediaType(in); got != want {
			t.Errorf("MediaType(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAccepts(t *testing.T) {
	const pidf = "application/pidf+xml"
	for _, accept := range [][]string{nil, {}, {pidf}, {"Application/PIDF+XML;q=0.5"}, {"application/*"},
		{"text/plain, */*"}, {"application/xpidf+xml", pidf}} {
		if !Accepts(accept, pidf) {
			t.Errorf("Accepts(%q) = false", accept)
		}
	}
	for _, accept := range [][]string{{"application/xpidf+xml", "text/plain"}, {"text/*"}, {""}, {"a,,b"}} {
		if Accepts(accept, pidf) {
			t.Errorf("Accepts(%q) = true", accept)
		}
	}
}

func TestCheckAccept(t *testing.T) {
	ws := []Watcher{{ID: "w1"}, {ID: "w2", Accept: []string{"application/xpidf+xml", "text/plain"}}}
	err := CheckAccept(ws, "application/pidf+xml")
	var rej *Rejection
	if !errors.As(err, &rej) || rej.Code != 406 ||
		rej.Reason != "watcher accepts application/xpidf+xml, text/plain; this package sends only application/pidf+xml" {
		t.Fatalf("err = %v", err)
	}
	if err := CheckAccept(ws[:1], "application/pidf+xml"); err != nil {
		t.Fatalf("no Accept: %v", err)
	}
	// A list shared by watchers is checked once; a list of the same
	// length after it is checked for itself.
	pidf := []string{"application/pidf+xml"}
	ws = []Watcher{{ID: "w1", Accept: pidf}, {ID: "w2", Accept: pidf}, {ID: "w3", Accept: []string{"text/plain"}}}
	if err := CheckAccept(ws[:2], "application/pidf+xml"); err != nil {
		t.Fatalf("shared list: %v", err)
	}
	if err := CheckAccept(ws, "application/pidf+xml"); !errors.As(err, &rej) || rej.Code != 406 {
		t.Fatalf("a different list after a shared one: %v", err)
	}
}

func TestCheckContentType(t *testing.T) {
	const mwi = "application/simple-message-summary"
	if err := CheckContentType("Application/Simple-Message-Summary; charset=utf-8", mwi); err != nil {
		t.Fatal(err)
	}
	err := CheckContentType("text/plain", mwi)
	var rej *Rejection
	if !errors.As(err, &rej) || rej.Code != 415 || rej.Reason != `content type "text/plain" is not supported, only `+mwi {
		t.Fatalf("text/plain: %v", err)
	}
}
