package main

import (
	"testing"

	"github.com/presenced/presenced/sdk/sdktest"
	"github.com/presenced/presenced/sdk/sdktest/conformance"
)

// TestConformance holds the built module to ABI.md with the kit.
func TestConformance(t *testing.T) {
	conformance.Run(t, sdktest.Build(t, pkg), conformance.Options{
		Name:     "conference",
		Resource: "sip:conf233@example.com",
		Accept:   map[string]conformance.Sample{"conference": {ContentType: infoType, Body: sdktest.Testdata(t, "seq-1-full.xml")}},
		Refuse:   map[string]conformance.Sample{"conference": {ContentType: infoType, Body: sdktest.Testdata(t, "bad-unclosed.xml")}},
	})
}
