package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/presenced/presenced/internal/config"
)

// listenWeb binds [web] listen, with TLS when it has a certificate, once
// its folder is found: before the store is opened, like every listener.
func listenWeb(c config.Web) (net.Listener, error) {
	if fi, err := os.Stat(c.Dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("web dir %s is not a folder (the buddy list is web/buddylist; `make web` installs its JavaScript): %v", c.Dir, err)
	}
	var conf *tls.Config
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("web certificate: %w", err)
		}
		conf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return nil, fmt.Errorf("web listener: %w", err)
	}
	if conf != nil {
		ln = tls.NewListener(ln, conf)
	}
	return ln, nil
}

// serveWeb serves the [web] folder on ln, and /presenced.json: the
// WebSocket URLs of the SIP listeners, which a page reads to know where to
// connect whatever ports the configuration gives. stop shuts it down.
func serveWeb(ln net.Listener, c config.Web, sipAddrs []string, log *slog.Logger) (stop func()) {
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServer(http.Dir(c.Dir)))
	mux.HandleFunc("/presenced.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(map[string][]string{"websocket": webSocketURLs(sipAddrs, r.Host)})
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	log.Info("web serving", "addr", ln.Addr().String(), "dir", c.Dir)
	return func() { hs.Close() }
}

// webSocketURLs are the ws:// and wss:// URLs of the listeners among addrs
// ("transport:host:port"). A listener on every interface is named by the
// host the page was loaded from, which the browser can reach.
func webSocketURLs(addrs []string, requestHost string) []string {
	pageHost := requestHost
	if h, _, err := net.SplitHostPort(requestHost); err == nil {
		pageHost = h
	}
	var urls []string
	for _, a := range addrs {
		tr, hp, _ := strings.Cut(a, ":")
		if tr != "ws" && tr != "wss" {
			continue
		}
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			host = strings.Trim(pageHost, "[]")
		}
		urls = append(urls, tr+"://"+net.JoinHostPort(host, port))
	}
	return urls
}
