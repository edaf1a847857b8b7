package main

import (
	"reflect"
	"testing"
)

// /presenced.json names the WebSocket listeners; one on every interface by
// the host the page came from, which the browser can reach.
func TestWebSocketURLs(t *testing.T) {
	addrs := []string{"udp:127.0.0.1:5060", "ws:127.0.0.1:5066", "wss:0.0.0.0:7443", "ws:[::]:80", "tcp:127.0.0.1:5060"}
	got := webSocketURLs(addrs, "sip.example.com:8088")
	want := []string{"ws://127.0.0.1:5066", "wss://sip.example.com:7443", "ws://sip.example.com:80"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := webSocketURLs([]string{"wss:[::]:7443"}, "[2001:db8::1]:8088"); !reflect.DeepEqual(got, []string{"wss://[2001:db8::1]:7443"}) {
		t.Errorf("IPv6 page host: got %q", got)
	}
}
