package wasm

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/defenseunicorns/peat-gateway/wasm/internal/memalloc"
)

// callState is the per-instance state the tick import consults. It travels in
// the call context so the shared host function needs no lookup table.
type callState struct {
	deadline atomic.Int64 // monotonic nanoseconds since epoch; 0 = none
	killed   atomic.Bool  // set by shutdown
	expired  bool         // set by tick when it stops the guest
	ticks    uint32
}

type stateKey struct{}

// epoch anchors monotonic readings: time.Since on it never goes backwards.
var epoch = time.Now()

func monotonic() int64 { return int64(time.Since(epoch)) }

// errBudget is the panic value tick raises; wazero unwinds the guest and
// returns it (wrapped) from the call.
var errBudget = errors.New("filter exceeded its time budget")

// tick runs every tickInterval loop iterations or function entries of an
// instrumented guest. It stops the guest once its deadline passed and yields
// to the Go scheduler now and then, because native guest code cannot be
// preempted and would otherwise hold up a GC stop-the-world.
func tick(ctx context.Context, _ api.Module, _ []uint64) {
	st, _ := ctx.Value(stateKey{}).(*callState)
	if st == nil {
		return
	}
	st.ticks++
	if d := st.deadline.Load(); (d != 0 && monotonic() > d) || st.killed.Load() {
		st.expired = true
		panic(errBudget)
	}
	if st.ticks&15 == 0 {
		runtime.Gosched()
	}
}

// capBuffer keeps the first bytes a guest writes to stdout/stderr since the
// last reset (a Go guest's panic message lands there), bounded so a chatty
// guest cannot grow host memory.
type capBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const capBufferMax = 1024

func (c *capBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	if room := capBufferMax - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	c.mu.Unlock()
	return len(p), nil
}

func (c *capBuffer) reset() {
	c.mu.Lock()
	c.buf = c.buf[:0]
	c.mu.Unlock()
}

func (c *capBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.TrimSpace(string(c.buf))
}

// instance is one instantiated guest with its export handles looked up once.
// It serves one batch at a time.
type instance struct {
	mod              api.Module
	alloc, process   api.Function
	ctx              context.Context
	st               *callState
	out              *capBuffer
	inPtr, inCap     uint32
	stack            []uint64
	timeout          time.Duration
	highWaterBytes   uint32
	pendingRecycling bool
}

// failure is a failed guest call; the instance that produced it is discarded.
type failure struct {
	reason string // "trap", "timeout", "bad_output", "instantiate", "init"
	msg    string
}

func (f *failure) Error() string { return f.msg }

// newInstance instantiates the module under the binding's memory cap and runs
// _initialize and gw_init(config) within initTimeout.
func newInstance(ctx context.Context, h *Host, m *Module, config []byte, limitPages uint32, timeout, initTimeout time.Duration) (*instance, error) {
	st := &callState{}
	out := &capBuffer{}
	cctx := context.WithValue(ctx, stateKey{}, st)
	st.deadline.Store(monotonic() + int64(initTimeout))
	actx := experimental.WithMemoryAllocator(cctx, memalloc.Limited(limitPages))
	mod, err := h.rt.InstantiateModule(actx, m.compiled, newInstanceConfig(out))
	if err != nil {
		reason := "instantiate"
		if st.expired {
			reason = "timeout"
		}
		return nil, &failure{reason, guestError("instantiate", err, st, out)}
	}
	in := &instance{
		mod:            mod,
		alloc:          mod.ExportedFunction(exportAlloc),
		process:        mod.ExportedFunction(exportProcess),
		ctx:            cctx,
		st:             st,
		out:            out,
		stack:          make([]uint64, 2),
		timeout:        timeout,
		highWaterBytes: uint32(uint64(limitPages) * memalloc.PageSize * 3 / 4),
	}
	initFn := mod.ExportedFunction(exportInit)
	if err := in.ensureArena(len(config)); err != nil {
		in.close()
		return nil, err
	}
	if !mod.Memory().Write(in.inPtr, config) {
		in.close()
		return nil, &failure{"init", "config does not fit the guest arena"}
	}
	in.stack[0] = uint64(len(config))
	if err := initFn.CallWithStack(cctx, in.stack); err != nil {
		reason := "init"
		if st.expired {
			reason = "timeout"
		}
		in.close()
		return nil, &failure{reason, guestError("gw_init", err, st, out)}
	}
	if r := in.stack[0]; r != 0 {
		msg := "filter rejected its config"
		if b, ok := mod.Memory().Read(uint32(r>>32), uint32(r)); ok && len(b) > 0 {
			msg = "filter rejected its config: " + string(b)
		}
		in.close()
		return nil, &failure{"init", msg}
	}
	st.deadline.Store(0)
	return in, nil
}

func guestError(what string, err error, st *callState, out *capBuffer) string {
	var b strings.Builder
	if st.expired {
		b.WriteString(errBudget.Error())
	} else {
		// wazero appends a wasm stack trace; the first line names the trap.
		msg, _, _ := strings.Cut(err.Error(), "\n")
		fmt.Fprintf(&b, "%s: %s", what, msg)
	}
	if s := out.String(); s != "" {
		b.WriteString("; guest output: ")
		b.WriteString(s)
	}
	return b.String()
}

// ensureArena makes the guest's input arena at least n bytes.
func (in *instance) ensureArena(n int) error {
	if n == 0 {
		n = 1
	}
	if uint32(n) <= in.inCap && in.inPtr != 0 {
		return nil
	}
	want := max(uint32(n), 64<<10)
	in.stack[0] = uint64(want)
	if err := in.alloc.CallWithStack(in.ctx, in.stack); err != nil {
		return &failure{"trap", guestError("gw_alloc", err, in.st, in.out)}
	}
	p := uint32(in.stack[0])
	if p == 0 {
		return &failure{"trap", fmt.Sprintf("gw_alloc(%d) returned 0 (out of memory)", want)}
	}
	in.inPtr, in.inCap = p, want
	return nil
}

// run sends one batch through gw_process within budget (the binding's
// timeout when zero). A non-nil error is a *failure and means the instance
// must be discarded.
func (in *instance) run(events []Event, res []result, budget time.Duration) error {
	size := frameSize(events)
	if budget <= 0 {
		budget = in.timeout
	}
	in.st.deadline.Store(monotonic() + int64(budget))
	defer in.st.deadline.Store(0)
	if err := in.ensureArena(size); err != nil {
		return err
	}
	mem := in.mod.Memory()
	dst, ok := mem.Read(in.inPtr, uint32(size))
	if !ok {
		return &failure{"bad_output", "guest arena outside its memory"}
	}
	encodeFrame(dst, events)
	in.out.reset()
	in.stack[0] = uint64(size)
	if err := in.process.CallWithStack(in.ctx, in.stack); err != nil {
		if in.st.expired {
			return &failure{"timeout", guestError("gw_process", err, in.st, in.out)}
		}
		return &failure{"trap", guestError("gw_process", err, in.st, in.out)}
	}
	r := in.stack[0]
	if int64(r) < 0 {
		return &failure{"trap", fmt.Sprintf("gw_process returned fatal status %d", int64(r))}
	}
	view, ok := mem.Read(uint32(r>>32), uint32(r))
	if !ok {
		return &failure{"bad_output", "output frame outside guest memory"}
	}
	if err := decodeOutput(view, res); err != nil {
		return &failure{"bad_output", err.Error()}
	}
	if mem.Size() > in.highWaterBytes {
		// A Go guest's heap never shrinks; recycle before it hits the cap.
		in.pendingRecycling = true
	}
	return nil
}

func (in *instance) close() {
	_ = in.mod.Close(context.Background())
}
