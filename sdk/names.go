package sdk

import "github.com/presenced/presenced/abi"

// The ABI's names a module uses, so that a module and its tests import sdk
// alone: the ops a Request carries, the watcher statuses, the log levels.

// Op says what a Request asks of the module (abi.Op).
type Op = abi.Op

// The ops of ABI.md §5; the Module and handler methods are named after them.
const (
	OpPublish      = abi.OpPublish
	OpUnpublish    = abi.OpUnpublish
	OpRender       = abi.OpRender
	OpCommand      = abi.OpCommand
	OpBinding      = abi.OpBinding
	OpXMPP         = abi.OpXMPP
	OpWatcherEvent = abi.OpWatcherEvent
)

// Watcher authorization statuses (Watcher.Status, Notification.Status,
// WatcherEvent.Status), as in RFC 3857.
const (
	StatusActive     = abi.StatusActive
	StatusPending    = abi.StatusPending
	StatusTerminated = abi.StatusTerminated
	// StatusRejected, in a Notification, refuses the watcher.
	StatusRejected = abi.StatusRejected
)

// LogLevel is the level of a line written with Log.
type LogLevel uint32

// The levels of the host's log import (ABI.md §3).
const (
	LogDebug LogLevel = abi.LogDebug
	LogInfo  LogLevel = abi.LogInfo
	LogWarn  LogLevel = abi.LogWarn
	LogError LogLevel = abi.LogError
)
