package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/presenced/presenced/sdk/sdktest"
	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// needTool returns what find found, or ends the test: in CI (CI=true) a
// missing tool fails it, elsewhere it is skipped with how to get the tool.
func needTool(t *testing.T, what, how string, find func() (string, error)) string {
	t.Helper()
	p, err := find()
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found (%v): %s", what, err, how)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// The buddy list page of web/buddylist, in headless Chromium, served by
// the daemon's [web] listener: Alice's page connects over ws, Bob's over
// wss (a certificate made here), and a softphone on UDP (a raw SIP peer)
// is Carol. Each sees the others' status change, available to busy with a
// note and back, through SIP.js's PUBLISH and SUBSCRIBE over WebSocket.
func TestBuddyListInBrowser(t *testing.T) {
	chromium := needTool(t, "chromium", "apt-get install chromium", func() (string, error) {
		return exec.LookPath("chromium")
	})
	page, _ := filepath.Abs("../../web/buddylist")
	needTool(t, "SIP.js for the page", "make web (npm ci in web/buddylist)", func() (string, error) {
		p := filepath.Join(page, "node_modules/sip.js/lib/index.js")
		_, err := os.Stat(p)
		return p, err
	})
	bin := buildDaemon(t)
	pa := sdktest.Build(t, paPkg)
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	cfg := writeConfig(t, fmt.Sprintf(`
[server]
data_dir = %q
[[listen]]
transport = "udp"
address = "127.0.0.1:0"
[[listen]]
transport = "ws"
address = "127.0.0.1:0"
[[listen]]
transport = "wss"
address = "127.0.0.1:0"
cert_file = %q
key_file = %q
[web]
listen = "127.0.0.1:0"
dir = %q
[admin]
listen = ""
[store]
backend = "memory"
[extension.pa]
path = %q
trusted = true
`, filepath.Join(dir, "data"), cert, key, page, pa))
	d := startDaemon(t, bin, "-config", cfg)
	udp := d.serving(t)
	ws := d.await(t, regexp.MustCompile(`[ \[]ws:(127\.0\.0\.1:\d+)`), 5*time.Second)[1]
	wss := d.await(t, regexp.MustCompile(`[ \[]wss:(127\.0\.0\.1:\d+)`), 5*time.Second)[1]
	web := d.await(t, regexp.MustCompile(`"web serving" addr=(\S+)`), 5*time.Second)[1]

	const alice, bob, carol = "sip:alice@example.com", "sip:bob@example.com", "sip:carol@example.com"
	phone := siptest.NewPeer(t, "UDP", udp)
	r := phone.Publish("presence", carol, "application/pidf+xml", phonePIDF(carol, "busy", "On the phone"), "Expires: 600")
	siptest.WantCode(t, r, 200)
	etag := siptest.Header(r, "SIP-ETag")

	opts := append(chromedp.DefaultExecAllocatorOptions[:0:0],
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(filepath.Join(dir, "chromium")),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("ignore-certificate-errors", true), // the wss certificate is the test's own
	)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	open := func(user, server string, buddies ...string) context.Context {
		t.Helper()
		tab, _ := chromedp.NewContext(browser)
		q := url.Values{"user": {user}, "server": {server}, "buddy": buddies, "connect": {"1"}}
		if err := chromedp.Do(tab, chromedp.Navigate("http://"+web+"/?"+q.Encode()),
			chromedp.WaitVisible(chromedp.CSS(`body[data-published="available"]`))); err != nil {
			t.Fatalf("%s's page over %s: %v\n%s", user, server, err, pageLog(tab))
		}
		return tab
	}
	alicePage := open(alice, "ws://"+ws, bob, carol)
	bobPage := open(bob, "wss://"+wss, alice)

	// see waits until tab shows buddy with status and note.
	see := func(tab context.Context, who, buddy, status, note string) {
		t.Helper()
		sel := fmt.Sprintf(`li[data-uri=%q][data-status=%q]`, buddy, status)
		// Bounded well inside the test's own deadline, so that a page that
		// never shows it fails here, with the page's log still readable.
		wait, cancel := context.WithTimeout(tab, 10*time.Second)
		defer cancel()
		err := chromedp.Do(wait, chromedp.WaitVisible(chromedp.CSS(sel)))
		var got string
		if err == nil {
			got, err = chromedp.Run(tab, chromedp.Text(chromedp.CSS(sel+" .note")))
		}
		if err == nil && got != note {
			err = fmt.Errorf("note %q, want %q", got, note)
		}
		if err != nil {
			t.Fatalf("%s does not see %s %s %q: %v\n%s", who, buddy, status, note, err, pageLog(tab))
		}
	}
	// set chooses status and note on tab's page and clicks Set.
	set := func(tab context.Context, status, note string) {
		t.Helper()
		published := status
		if note != "" {
			published += ": " + note
		}
		// The note is set by script: chromedp's SetValue refuses "".
		clearNote := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`(document.getElementById("note").value = "") === ""`)(ctx, t)
			return err
		})
		if err := chromedp.Do(tab, chromedp.SetValue(chromedp.ID("status"), status), clearNote,
			chromedp.SendKeys(chromedp.ID("note"), note), chromedp.Click(chromedp.ID("publish")),
			chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`body[data-published=%q]`, published)))); err != nil {
			t.Fatalf("set %s %q: %v\n%s", status, note, err, pageLog(tab))
		}
	}

	see(alicePage, "Alice (ws)", bob, "available", "")
	see(alicePage, "Alice (ws)", carol, "busy", "On the phone")
	see(bobPage, "Bob (wss)", alice, "available", "")

	// Carol's softphone watches Alice.
	r = phone.Send(siptest.Request{Method: "SUBSCRIBE", URI: alice, Headers: []string{
		"From: <" + carol + ">;tag=phone1", "To: <" + alice + ">", "Call-ID: " + siptest.NewCallID(),
		"CSeq: 1 SUBSCRIBE", phone.Contact(), "Event: presence", "Accept: application/pidf+xml", "Expires: 600"}})
	siptest.WantCode(t, r, 200)
	phoneSees := func(busy bool, note string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			n := phone.NotifyWithin(time.Until(deadline))
			if n == nil {
				t.Fatalf("the softphone got no NOTIFY of Alice busy=%v note %q", busy, note)
			}
			b := string(n.Body())
			if strings.Contains(b, "<basic>open</basic>") && strings.Contains(b, "busy/>") == busy &&
				(note == "" && !strings.Contains(b, "note>") || note != "" && strings.Contains(b, ">"+note+"<")) {
				return
			}
		}
	}
	phoneSees(false, "")

	set(alicePage, "busy", "In a meeting")
	see(bobPage, "Bob (wss)", alice, "busy", "In a meeting")
	phoneSees(true, "In a meeting")

	set(alicePage, "available", "")
	see(bobPage, "Bob (wss)", alice, "available", "")
	phoneSees(false, "")

	set(bobPage, "away", "Back at three")
	see(alicePage, "Alice (ws)", bob, "away", "Back at three")

	siptest.WantCode(t, phone.Publish("presence", carol, "application/pidf+xml", phonePIDF(carol, "available", ""),
		"SIP-If-Match: "+etag, "Expires: 600"), 200)
	see(alicePage, "Alice (ws)", carol, "available", "")
}

// phonePIDF is what a softphone publishes: an open tuple, and busy with a
// note, or nothing more.
func phonePIDF(entity, status, note string) string {
	person := ""
	if status == "busy" {
		person = `<dm:person id="p"><rpid:activities><rpid:busy/></rpid:activities><dm:note>` + note + `</dm:note></dm:person>`
	}
	return `<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="` + entity + `">
<tuple id="phone"><status><basic>open</basic></status></tuple>` + person + `</presence>`
}

// pageLog is the page's own log, for a failure's message.
func pageLog(tab context.Context) string {
	ctx, cancel := context.WithTimeout(tab, 2*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("log") ? document.getElementById("log").textContent : document.documentElement.outerHTML`))
	if err != nil {
		return "page log unreadable: " + err.Error()
	}
	return "page log:\n" + s
}

// selfSigned writes a certificate for 127.0.0.1, valid an hour either side
// of now, and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "presenced test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}
