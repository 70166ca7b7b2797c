package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
)

// memoryLimitShare is the part of the container's memory limit the Go
// runtime aims to stay under: the rest is for what it does not count
// (stacks it has not returned, the binary, the kernel's socket buffers).
const memoryLimitShare = 0.9

// applyMemoryLimit sets the Go runtime's soft memory limit (what
// GOMEMLIMIT sets) from --memory-limit: "auto" takes 90% of the cgroup's
// memory limit (v2 memory.max or v1 memory.limit_in_bytes) unless
// GOMEMLIMIT is set; "off" leaves the runtime alone; a size ("512MiB",
// "1GiB", bytes) sets it. It returns the limit in force (0: none) and
// where it came from.
func applyMemoryLimit(flag string) (int64, string, error) {
	switch flag {
	case "off":
		return 0, "off", nil
	case "auto", "":
		if env := os.Getenv("GOMEMLIMIT"); env != "" {
			return debug.SetMemoryLimit(-1), "GOMEMLIMIT", nil
		}
		limit, ok := cgroupMemoryLimit("/", "/proc/self/cgroup")
		if !ok {
			return 0, "no cgroup memory limit", nil
		}
		n := int64(float64(limit) * memoryLimitShare)
		debug.SetMemoryLimit(n)
		return n, "90% of the cgroup's " + strconv.FormatInt(limit, 10) + " bytes", nil
	}
	n, err := parseSize(flag)
	if err != nil {
		return 0, "", fmt.Errorf("--memory-limit %q: %w (want auto, off, or a size such as 512MiB)", flag, err)
	}
	debug.SetMemoryLimit(n)
	return n, "--memory-limit", nil
}

// cgroupMemoryLimit reads the memory limit of the process's cgroup
// (cgroupFile lists them, as /proc/self/cgroup does) under root: false
// when there is none (unlimited, or not in a cgroup with one).
func cgroupMemoryLimit(root, cgroupFile string) (int64, bool) {
	data, err := os.ReadFile(filepath.Join(root, cgroupFile)) //nolint:gosec // a fixed /proc path (a test's root in tests)
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		var file string
		switch {
		case parts[0] == "0" && parts[1] == "":
			file = filepath.Join(root, "sys/fs/cgroup", parts[2], "memory.max")
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			file = filepath.Join(root, "sys/fs/cgroup/memory", parts[2], "memory.limit_in_bytes")
		default:
			continue
		}
		raw, err := os.ReadFile(file) //nolint:gosec // a cgroup file named by /proc/self/cgroup, read-only
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(raw))
		n, err := strconv.ParseInt(v, 10, 64)
		// "max" (v2), or v1's "no limit" (a page-rounded huge number).
		if err != nil || n <= 0 || n >= 1<<62 {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// parseSize reads a byte count with an optional binary unit.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("not a positive size")
	}
	return n * mult, nil
}
