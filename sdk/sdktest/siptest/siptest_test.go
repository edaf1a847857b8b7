package siptest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/sdk/sdktest/siptest"
)

// The harness as a module's test uses it, on the smallest module there is:
// a publication reaches a watcher, in its dialog, over each transport; the
// module's state is what the store holds; an unsubscribe ends the dialog.
func TestEchoOverSIP(t *testing.T) {
	srv := siptest.Start(t, siptest.Module{Package: "github.com/presenced/presenced/internal/extension/testdata/echo"})
	for _, tr := range []string{"UDP", "TCP"} {
		t.Run(tr, func(t *testing.T) {
			uri := "sip:alice-" + strings.ToLower(tr) + "@example.com"
			pub, w := srv.Peer(t, tr), srv.Peer(t, tr)
			siptest.WantCode(t, pub.Publish("echo", uri, "text/plain", "hello"), 200)
			sub, r := w.Subscribe("echo", uri, "Expires: 600")
			siptest.WantCode(t, r, 200)
			n := w.NotifyIn(sub.CallID)
			if string(n.Body()) != "hello" || siptest.Tag(siptest.Header(n, "From")) != sub.ToTag {
				t.Fatalf("first NOTIFY:\n%s", n)
			}
			stored := false
			for _, rs := range srv.Resources(t) {
				stored = stored || (rs.Event == "echo" && rs.URI == uri && string(rs.State) == "hello")
			}
			if !stored {
				t.Fatalf("the store does not hold echo's state of %s: %+v", uri, srv.Resources(t))
			}
			siptest.WantCode(t, sub.Again("Expires: 0"), 200)
			if n := w.Notify(); siptest.Header(n, "Subscription-State") != "terminated;reason=timeout" {
				t.Fatalf("final NOTIFY:\n%s", n)
			}
			w.Quiet(100 * time.Millisecond)
			siptest.WantCode(t, sub.Again(), 481)
		})
	}
}
