// Package procgroup runs the real peers the tests and make demo start
// (Envoy, the LangGraph servers) as process groups of their own, killed
// with their parent, and stops a group politely first. The langgate
// binary never imports it.
package procgroup

import (
	"os/exec"
	"syscall"
	"time"
)

// Prepare makes cmd, once started, the leader of a process group of its
// own (a server may start workers) that the kernel kills with the caller.
func Prepare(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// Stop ends the process group of a started cmd prepared with Prepare:
// SIGTERM, then SIGKILL after grace. done is closed once cmd has been
// waited for; Stop returns after that, reporting whether it had to kill.
func Stop(cmd *exec.Cmd, done <-chan struct{}, grace time.Duration) (killed bool) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
		return false
	case <-time.After(grace):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return true
	}
}
