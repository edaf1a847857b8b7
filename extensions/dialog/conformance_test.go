package main

import (
	"testing"

	"github.com/presenced/presenced/sdk/sdktest"
	"github.com/presenced/presenced/sdk/sdktest/conformance"
)

// TestConformance holds the built module to ABI.md with the kit.
func TestConformance(t *testing.T) {
	conformance.Run(t, sdktest.Build(t, pkg), conformance.Options{
		Name:     "dialog",
		Resource: "sip:bob@example.com",
		Accept:   map[string]conformance.Sample{"dialog": {ContentType: infoType, Body: sdktest.Testdata(t, "pbx-ringing.xml")}},
		Refuse:   map[string]conformance.Sample{"dialog": {ContentType: infoType, Body: []byte("<dialog-info")}},
	})
}
