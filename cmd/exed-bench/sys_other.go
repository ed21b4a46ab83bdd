//go:build !linux

package main

import (
	"errors"
	"syscall"
	"time"
)

// The harness measures on Linux (/proc, TCP_QUICKACK); elsewhere it runs
// but reports no memory figures.

func childAttr() *syscall.SysProcAttr { return nil }

func memory(pid int) (rss, peak int64, err error) {
	return 0, 0, errors.New("memory figures need Linux /proc")
}

func cpuTime(pid int) (time.Duration, error) {
	return 0, errors.New("CPU figures need Linux /proc")
}

func loadAvg() string  { return "?" }
func cpuModel() string { return "?" }
func kernel() string   { return "?" }
