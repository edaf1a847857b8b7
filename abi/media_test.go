package abi

import "testing"

func TestMediaType(t *testing.T) {
	for in, want := range map[string]string{
		"application/pidf+xml":                   "application/pidf+xml",
		" Application/PIDF+XML ; charset=UTF-8 ": "application/pidf+xml",
		"text/plain;":                            "text/plain",
		";":                                      "",
		"":                                       "",
	} {
		if got := MediaType(in); got != want {
			t.Errorf("MediaType(%q) = %q, want %q", in, got, want)
		}
	}
}
