package server

import "time"

// SetTimerJ sets how long s keeps an answered UDP server transaction
// (64*T1, 32 s, outside tests); call it between New and Start.
func SetTimerJ(s *Server, d time.Duration) { s.udp.timerJ = d }

// RenderApart is the number of watchers from which a change of a
// presentity's publications is rendered for them after its answer.
const RenderApart = renderApart

// Dialogs is how many subscriptions s holds in memory and how many it
// let go of (idle.go).
func Dialogs(s *Server) (held, idle int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.dialogs), len(s.idleDialogs)
}
