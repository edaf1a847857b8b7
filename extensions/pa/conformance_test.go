package main

import (
	"testing"

	"github.com/presenced/presenced/sdk/sdktest"
	"github.com/presenced/presenced/sdk/sdktest/conformance"
)

// TestConformance holds the built module to ABI.md with the kit.
func TestConformance(t *testing.T) {
	conformance.Run(t, sdktest.Build(t, pkg), conformance.Options{
		Name:     "pa",
		Resource: "sip:alice@example.com",
		Accept:   map[string]conformance.Sample{presenceEvent: {ContentType: pidfType, Body: sdktest.Testdata(t, "simple.xml")}},
		Refuse:   map[string]conformance.Sample{presenceEvent: {ContentType: pidfType, Body: sdktest.Testdata(t, "bad-unclosed.xml")}},
	})
}
