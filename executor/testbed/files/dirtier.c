/*
 * pausecast test guest: a multiboot kernel that dirties guest RAM at a set number of pages per second.
 *
 * It exists so that a real live migration sees a known, steady dirty rate with no OS noise: no disk,
 * no page cache, nothing but this loop. QEMU loads it with -kernel (libvirt <os><kernel>) and passes
 * the command line, e.g.
 *     rate_pages=5000 region_mib=128          constant: one linear sweep over the region
 *     region_mib=128 hot_mib=16 hot_rate_pages=20000 cold_rate_pages=2000
 *                                             hot/cold: the first hot_mib swept over and over at the
 *                                             hot rate, the rest of the region at the cold rate
 *     region_start_mib=2 report_ms=1000 max_lag_ms=50        (defaults)
 *     stride_fp=65536 scatter=0 pm_timer=0 work_paced=0      (defaults: contiguous, in order, PIT,
 *                                                             catching up after a stall)
 *
 * stride_fp (16.16 fixed point, >= 1.0) places the region's i-th page at i x stride pages past the
 * start, so the written pages are spread through a larger span with never-written (zero) pages between
 * them, as a VM's unused memory is. scatter=1 writes each stream's pages in a scrambled order (each page
 * once per round, rounds as in the linear sweep), so the pages dirtied in any interval lie anywhere in
 * the stream rather than in one band just ahead of the previous one: QEMU's linear walk then finds
 * them pending at random, as the model assumes of a workload's writes.
 *
 * Progress goes to COM1: "pcd start ...", "pcd filled fill_ms=N", then one line per report_ms of guest
 * time, "pcd ms=<guest ms> pages=<pages written> hot=<n> cold=<n>". The host reads the domain's serial
 * log to see that the guest keeps running (e.g. after a failed migration) and what rate it achieved.
 *
 * Pacing uses the 8254 PIT's IRQ0 at ~1 kHz and HLT in between, so an idle-ish guest costs little host
 * CPU (two TCG guests must not saturate a 2-core box). Ticks the vCPU misses while it cannot run
 * (throttled by auto-converge, starved) are lost, and a write backlog beyond max_lag_ms is dropped: the
 * achieved rate then drops, as a real workload's would. With pm_timer=1 the guest still wakes on IRQ0
 * but reads the time from the ACPI PM timer, which loses nothing: the rate then holds in the host's
 * time while the vCPU gets its share of CPU at least every max_lag_ms (on a busy 2-core machine under
 * TCG the PIT clock falls 1-10 % behind, most during a migration, whose thread competes with the vCPU).
 * Such a guest catches up after every stall shorter than max_lag_ms, which is what a timer-paced
 * writer does and what defeats auto-converge: QEMU's throttle (softmmu/cpu-throttle.c) stops the vCPU
 * for pct / (1 - pct) x 10 ms in every 10 ms / (1 - pct), under 50 ms up to 83 %.
 *
 * work_paced=1 is the workload instead: each wake-up earns the writers at most one PIT period of the
 * clock, the work a vCPU that ran through the tick could have done, so time the vCPU could not run is
 * work lost, as for a CPU-bound program; throttled to pct it writes (1 - pct) of its rate. (A starved
 * vCPU loses work the same way, so on a busy host it writes somewhat under its rate.)
 *
 * Build: gcc -m32 -ffreestanding -nostdlib, ld -m elf_i386 -T dirtier.ld (see guest_build.py). There is
 * no 64-bit division, so no libgcc: gcc inlines 64-bit add/sub/mul/compare.
 */
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned short u16;
typedef unsigned char u8;

#define PIT_HZ 1193182u /* 8254 input clock */
#define PM_HZ 3579545u /* ACPI PM timer */
#define PM_TIMER_PORT 0x608u /* PIIX4 PMBASE 0x600 as SeaBIOS sets it, + 8 */
#define PM_MASK 0xFFFFFFu /* a 24-bit counter: it wraps every 4.7 s */
#define PIT_RELOAD 1193u /* ~1 kHz; accounting below is exact in PIT ticks, so ~ is fine */
#define PAGE 4096u
#define MIB (1024u * 1024u)

/* Multiboot v1 header. QEMU only boots 32-bit ELF multiboot kernels and looks for this in the first
 * 8 KiB of the file; flag 1 asks for mem_upper so a region past the end of RAM can be clamped. */
#define MB_MAGIC 0x1BADB002u
#define MB_FLAGS 0x00000003u
__attribute__((section(".multiboot"), used, aligned(4)))
static const u32 multiboot_header[3] = {MB_MAGIC, MB_FLAGS, (u32)-(MB_MAGIC + MB_FLAGS)};

struct mb_info {
    u32 flags, mem_lower, mem_upper, boot_device, cmdline;
};

u8 stack[16384] __attribute__((aligned(16), used));
volatile u32 irq0_count __attribute__((used));

/* Our own GDT: the loader's one lives in option-ROM memory we should not rely on. */
__attribute__((aligned(8), used)) u64 gdt[3] = {0, 0x00CF9A000000FFFFull, 0x00CF92000000FFFFull};
__attribute__((used)) struct {
    u16 limit;
    u32 base;
} __attribute__((packed)) gdt_ptr = {sizeof gdt - 1, (u32)gdt};

/* Entered in flat 32-bit protected mode, interrupts off, no stack, EBX = multiboot info. */
__asm__(".text\n"
        ".globl _start\n"
        "_start:\n"
        "  mov $stack + 16384, %esp\n"
        "  lgdt gdt_ptr\n"
        "  ljmp $0x08, $1f\n"
        "1: mov $0x10, %ax\n"
        "  mov %ax, %ds\n  mov %ax, %es\n  mov %ax, %ss\n  mov %ax, %fs\n  mov %ax, %gs\n"
        "  push %ebx\n"
        "  call kmain\n"
        "2: cli\n  hlt\n  jmp 2b\n"
        /* IRQ0: count and acknowledge; the main loop does the work. */
        "irq0_stub:\n"
        "  push %eax\n  lock incl irq0_count\n  mov $0x20, %al\n  outb %al, $0x20\n  pop %eax\n  iret\n"
        /* Any other PIC line (all masked, but spurious IRQ7/15 can still arrive). */
        "irq_other_stub:\n"
        "  push %eax\n  mov $0x20, %al\n  outb %al, $0xA0\n  outb %al, $0x20\n  pop %eax\n  iret\n"
        "fault_stub:\n"
        "  call fault\n");

extern char irq0_stub[], irq_other_stub[], fault_stub[];

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline u32 inl(u16 port) {
    u32 v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline u8 inb(u16 port) {
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

/* ---- COM1 output, polled: the console of a kernel with no drivers. ---- */
static void putc(char c) {
    for (int i = 0; i < 100000 && !(inb(0x3FD) & 0x20); i++) {
    }
    outb(0x3F8, (u8)c);
}
static void puts(const char *s) {
    while (*s) putc(*s++);
}
static void putu(u32 v) {
    char buf[11];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    while (n) putc(buf[--n]);
}
static void kv(const char *k, u32 v) {
    puts(k);
    putu(v);
}

void fault(void) __attribute__((used, noreturn));
void fault(void) {
    puts("pcd fault\n"); /* a CPU exception: nothing sensible to do but stop visibly */
    for (;;) __asm__ volatile("cli; hlt");
}

/* ---- keeping QEMU's dirty log honest under TCG ----
 * QEMU before 9.0 (Debian 12 ships 7.2) does not reset TCG's TLB when a migration bitmap sync clears
 * a page's dirty bit, so later writes through a TLB entry that is still cached are not logged: the
 * destination gets a stale copy of every page the guest keeps hot (our stack, so our own clock state),
 * and fewer dirty pages are counted than were written. Dropping the whole TLB (toggling CR4.PGE flushes
 * it even with paging off) makes the next write to each page take the logged slow path. We do it before
 * the region writes of each tick, and again before touching every page that holds our own state, so
 * the last write to any page is always a logged one. Harmless and cheap under KVM. */
extern char __data_start[], __bss_end[];

static void tlb_flush(void) {
    u32 cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    __asm__ volatile("mov %0, %%cr4" ::"r"(cr4 ^ 0x80u) : "memory");
    __asm__ volatile("mov %0, %%cr4" ::"r"(cr4) : "memory");
}

static void relog_own_pages(void) {
    tlb_flush();
    for (u32 a = (u32)__data_start & ~(PAGE - 1); a < (u32)__bss_end; a += PAGE) {
        volatile u32 *w = (volatile u32 *)a;
        *w = *w; /* same value, but a logged write */
    }
}

/* ---- interrupts: IDT, PIC remapped to 0x20-0x2F with only IRQ0 unmasked, PIT channel 0 ---- */
struct idt_entry {
    u16 off_lo, sel;
    u8 zero, type;
    u16 off_hi;
} __attribute__((packed));
static struct idt_entry idt[48];

static void set_gate(int v, char *handler) {
    u32 a = (u32)handler;
    idt[v] = (struct idt_entry){(u16)a, 0x08, 0, 0x8E, (u16)(a >> 16)};
}

static void interrupts_init(void) {
    for (int v = 0; v < 32; v++) set_gate(v, fault_stub);
    for (int v = 32; v < 48; v++) set_gate(v, irq_other_stub);
    set_gate(32, irq0_stub);
    struct {
        u16 limit;
        u32 base;
    } __attribute__((packed)) idt_ptr = {sizeof idt - 1, (u32)idt};
    __asm__ volatile("lidt %0" ::"m"(idt_ptr));

    /* The BIOS maps IRQs onto CPU exception vectors 8-15; move them past 31. */
    outb(0x20, 0x11), outb(0xA0, 0x11);
    outb(0x21, 0x20), outb(0xA1, 0x28);
    outb(0x21, 0x04), outb(0xA1, 0x02);
    outb(0x21, 0x01), outb(0xA1, 0x01);
    outb(0x21, 0xFE), outb(0xA1, 0xFF);

    outb(0x43, 0x34); /* channel 0, lo/hi byte, mode 2 (rate generator) */
    outb(0x40, PIT_RELOAD & 0xFF);
    outb(0x40, PIT_RELOAD >> 8);
    __asm__ volatile("sti");
}

/* ---- command line ---- */
static int starts(const char *s, const char *p) {
    while (*p)
        if (*s++ != *p++) return 0;
    return 1;
}
/* Value of the "key=<decimal>" token, or def. QEMU prepends the kernel's file name; unknown tokens
 * are ignored. */
static u32 arg(const char *cl, const char *key, u32 def) {
    u32 klen = 0;
    while (key[klen]) klen++;
    for (const char *s = cl; *s; s++) {
        if ((s == cl || s[-1] == ' ') && starts(s, key) && s[klen] == '=') {
            u32 x = 0;
            for (const char *v = s + klen + 1; *v >= '0' && *v <= '9'; v++) x = x * 10u + (u32)(*v - '0');
            return x;
        }
    }
    return def;
}

/* The region's pages: page i at base + floor(i x stride) pages (a 32x32->64 multiply, no division). */
static u32 region_base, stride_fp = 65536u;

static volatile u32 *region_page(u32 i) {
    return (volatile u32 *)(region_base + (u32)(((u64)i * stride_fp) >> 16) * PAGE);
}

/* One writer over region pages [first, first + npages) at `rate` pages/s of guest time. Credits are
 * in clock ticks (PIT or PM timer) so the rate is exact without division: a tick earns `rate`, a page
 * costs the clock's frequency `hz`.
 * In order, or scattered: a full-period LCG over the next power of two >= npages (multiplier = 1 mod 4,
 * odd increment), skipping indexes past the end, visits every page once per round. */
struct stream {
    u32 first, npages, rate, next, written, stamp, scatter, x, mask;
    u64 credits, cap;
};

static void stream_init(struct stream *s, u32 first, u32 npages, u32 rate, u32 max_lag_ms, u32 scatter,
                        u32 hz) {
    s->first = first;
    s->npages = npages;
    s->rate = npages ? rate : 0;
    s->next = s->written = s->x = 0;
    s->stamp = 1;
    s->scatter = scatter;
    for (s->mask = 1; s->mask < npages; s->mask <<= 1) {
    }
    s->mask -= 1;
    s->credits = 0;
    s->cap = (u64)hz * ((rate / 1000u) * max_lag_ms + (rate % 1000u) * max_lag_ms / 1000u + 1u);
}

static u32 stream_page(struct stream *s) {
    if (!s->scatter) return s->next;
    do {
        s->x = (s->x * 1103515245u + 12345u) & s->mask;
    } while (s->x >= s->npages);
    return s->x;
}

static void stream_run(struct stream *s, u32 ticks, u32 hz) {
    if (!s->rate) return;
    s->credits += (u64)ticks * s->rate;
    if (s->credits > s->cap) s->credits = s->cap;
    while (s->credits >= hz) {
        /* One word per page is enough for QEMU's dirty log; the value changes each round. */
        u32 i = stream_page(s);
        *region_page(s->first + i) = s->stamp + i;
        s->credits -= hz;
        s->written++;
        if (++s->next == s->npages) {
            s->next = 0;
            s->stamp++;
        }
    }
}


void kmain(struct mb_info *mb);
void kmain(struct mb_info *mb) {
    const char *cl = (mb->flags & 4u) ? (const char *)mb->cmdline : "";
    u32 ram_end = (mb->flags & 1u) ? MIB + mb->mem_upper * 1024u : 0;

    u32 start_mib = arg(cl, "region_start_mib", 2);
    u32 region_mib = arg(cl, "region_mib", 64);
    u32 rate = arg(cl, "rate_pages", 0);
    u32 hot_mib = arg(cl, "hot_mib", 0);
    u32 hot_rate = arg(cl, "hot_rate_pages", 0);
    u32 cold_rate = arg(cl, "cold_rate_pages", 0);
    u32 report_ms = arg(cl, "report_ms", 1000);
    u32 max_lag_ms = arg(cl, "max_lag_ms", 50);
    u32 scatter = arg(cl, "scatter", 0);
    u32 pm_timer = arg(cl, "pm_timer", 0);
    u32 work_paced = arg(cl, "work_paced", 0);
    stride_fp = arg(cl, "stride_fp", 65536u);
    if (start_mib < 2) start_mib = 2; /* keep clear of this kernel at 1 MiB */
    if (report_ms == 0) report_ms = 1000;
    if (stride_fp < 65536u) stride_fp = 65536u; /* pages must not overlap */

    region_base = start_mib * MIB;
    u32 region_pages = region_mib * (MIB / PAGE);
    if (ram_end && region_pages && (u32)region_page(region_pages - 1) + PAGE > ram_end) {
        puts("pcd warn region past end of RAM, clamped\n");
        while (region_pages && (u32)region_page(region_pages - 1) + PAGE > ram_end) region_pages--;
        region_mib = region_pages / (MIB / PAGE);
    }
    if (hot_mib > region_mib) hot_mib = region_mib;

    puts("pcd start");
    kv(" region_start_mib=", start_mib);
    kv(" region_mib=", region_mib);
    kv(" rate_pages=", rate);
    kv(" hot_mib=", hot_mib);
    kv(" hot_rate_pages=", hot_rate);
    kv(" cold_rate_pages=", cold_rate);
    kv(" stride_fp=", stride_fp);
    kv(" scatter=", scatter);
    kv(" pm_timer=", pm_timer);
    kv(" work_paced=", work_paced);
    kv(" ram_end_mib=", ram_end / MIB);
    puts("\n");

    interrupts_init();

    u32 hz = PIT_HZ, pm_last = 0;
    if (pm_timer) {
        /* A PM timer that does not count (no ACPI, another PMBASE) would stop the guest: check it. */
        pm_last = inl(PM_TIMER_PORT) & PM_MASK;
        for (u32 start = irq0_count; irq0_count - start < 5u;) __asm__ volatile("hlt");
        if ((inl(PM_TIMER_PORT) & PM_MASK) == pm_last) {
            puts("pcd warn no ACPI PM timer, pacing by the PIT\n");
            pm_timer = 0;
        } else {
            hz = PM_HZ;
            pm_last = inl(PM_TIMER_PORT) & PM_MASK;
        }
    }

    /* Non-zero content everywhere: QEMU sends an all-zero page as a few bytes, which would make the
     * region nearly free to migrate. The fill time tells the host whether this accelerator is usable. */
    u32 t0 = irq0_count;
    for (u32 i = 0; i < region_pages; i++) {
        volatile u32 *p = region_page(i);
        for (u32 w = 0; w < PAGE / 4u; w++) p[w] = ((i * (PAGE / 4u) + w) * 2654435761u) | 1u;
    }
    kv("pcd filled fill_ms=", irq0_count - t0);
    puts("\n");

    struct stream a, b;
    if (hot_mib) {
        u32 hot_pages = hot_mib * (MIB / PAGE);
        stream_init(&a, 0, hot_pages, hot_rate, max_lag_ms, scatter, hz);
        stream_init(&b, hot_pages, region_pages - hot_pages, cold_rate, max_lag_ms, scatter, hz);
    } else {
        stream_init(&a, 0, region_pages, rate, max_lag_ms, scatter, hz);
        stream_init(&b, 0, 0, 0, max_lag_ms, scatter, hz);
    }
    if (pm_timer) pm_last = inl(PM_TIMER_PORT) & PM_MASK; /* the fill's time is not owed */
    /* one PIT period on the pacing clock: PIT_RELOAD ticks of the PIT, or as many of the PM timer */
    u32 tick_period = pm_timer ? (u32)((u64)PIT_RELOAD * PM_HZ / PIT_HZ) : PIT_RELOAD;

    u32 seen = irq0_count, ms = 0, ms_frac = 0, next_report = 0;
    for (;;) {
        /* "sti; hlt" is atomic with respect to interrupts (STI's one-instruction shadow): no lost
         * wake-up between the check and the halt. */
        __asm__ volatile("cli");
        relog_own_pages(); /* with interrupts off: nothing writes our state after this */
        if (irq0_count == seen) __asm__ volatile("sti; hlt");
        __asm__ volatile("sti");
        tlb_flush();
        u32 n = irq0_count - seen;
        seen += n;
        u32 ticks = n * PIT_RELOAD;
        if (pm_timer) {
            u32 now = inl(PM_TIMER_PORT) & PM_MASK;
            ticks = (now - pm_last) & PM_MASK;
            pm_last = now;
        }
        /* the clock ticks the writers may use: all of them, or work_paced at most one period */
        u32 work = work_paced && ticks > tick_period ? tick_period : ticks;
        /* in slices of at most 2^20 ticks, so that ms_frac (ticks x 1000) fits in 32 bits */
        while (ticks) {
            u32 slice = ticks > (1u << 20) ? (1u << 20) : ticks;
            ticks -= slice;
            ms_frac += slice * 1000u;
            ms += ms_frac / hz;
            ms_frac %= hz;
            u32 used = slice < work ? slice : work;
            work -= used;
            stream_run(&a, used, hz);
            stream_run(&b, used, hz);
        }
        if (ms >= next_report) {
            kv("pcd ms=", ms);
            kv(" pages=", a.written + b.written);
            kv(" hot=", a.written);
            kv(" cold=", b.written);
            puts("\n");
            next_report += report_ms;
            if (next_report <= ms) next_report = ms + report_ms;
        }
    }
}
