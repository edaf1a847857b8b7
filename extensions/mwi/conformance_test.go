package main

import (
	"testing"

	"github.com/presenced/presenced/sdk/sdktest"
	"github.com/presenced/presenced/sdk/sdktest/conformance"
)

// TestConformance holds the built module to ABI.md with the kit.
func TestConformance(t *testing.T) {
	conformance.Run(t, sdktest.Build(t, pkg), conformance.Options{
		Name:     "mwi",
		Resource: "sip:bob@example.com",
		Accept:   map[string]conformance.Sample{event: {ContentType: summaryType, Body: sdktest.Testdata(t, "rfc3842.txt")}},
		Refuse:   map[string]conformance.Sample{event: {ContentType: summaryType, Body: []byte("Messages-Waiting: maybe\r\n")}},
	})
}
