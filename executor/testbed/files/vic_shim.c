/* The kernel side of an emulated Cisco VIC (enic) for one link, inside one libvirtd: loaded with
 * LD_PRELOAD by executor/testbed/qbh.py. libvirt's 802.1Qbh requests (virnetdevvportprofile.c) go to
 * the kernel over NETLINK_ROUTE, which hands them to the NIC driver's ndo_set_vf_port / ndo_get_vf_port
 * (net/core/rtnetlink.c do_setlink, rtnl_port_self_fill; enic_main.c enic_set_vf_port /
 * enic_get_vf_port). The testbed's link has no such driver, so for that link only:
 *
 *  - an RTM_SETLINK carrying IFLA_PORT_SELF goes to the VIC emulator (executor/vic/serve.py, over the
 *    UNIX socket $PAUSECAST_VIC_SOCKET) and reaches the kernel stripped of its attributes, so that the
 *    kernel's own acknowledgement (NLMSG_ERROR 0, same sequence) answers it, as it would once enic took
 *    the request; if the emulator cannot be reached the request goes to the kernel whole, which refuses
 *    it (EOPNOTSUPP), as it would without the NIC;
 *  - the kernel's RTM_NEWLINK answer to an RTM_GETLINK for that link gets the IFLA_PORT_SELF nest enic
 *    would add (IFLA_PORT_REQUEST, IFLA_PORT_RESPONSE, profile, instance and host UUIDs), with the
 *    emulator's status of the port; none while the port has had no request (enic: -ENODATA).
 *
 * Everything else, other links and other sockets included, passes through untouched. The link is
 * $PAUSECAST_VIC_LINK, looked up by name at each request (it may appear after libvirtd starts). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#define BUF_BYTES 65536
#define MAX_FDS 4096
#define UUID_BYTES 16

static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static ssize_t (*real_recvmsg)(int, struct msghdr *, int);
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* per fd: an RTM_GETLINK for the link is waiting for its answer; the answer, augmented, not yet read */
static char getlink_pending[MAX_FDS];
static unsigned char *stash[MAX_FDS];
static size_t stash_len[MAX_FDS];
static struct sockaddr_nl stash_from[MAX_FDS];

static void resolve(void) {
    if (!real_sendmsg)
        real_sendmsg = dlsym(RTLD_NEXT, "sendmsg");
    if (!real_recvmsg)
        real_recvmsg = dlsym(RTLD_NEXT, "recvmsg");
}

static int link_index(void) {
    const char *name = getenv("PAUSECAST_VIC_LINK");
    return name ? (int)if_nametoindex(name) : 0;
}

static int is_route_netlink(int fd) {
    int domain = 0, protocol = -1;
    socklen_t len = sizeof(domain);
    if (fd < 0 || fd >= MAX_FDS || getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
        return 0;
    len = sizeof(protocol);
    return domain == AF_NETLINK && getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) == 0 &&
           protocol == NETLINK_ROUTE;
}

/* One line to the emulator, one line back; 0 on success. */
static int ask(const char *line, char *reply, size_t reply_size) {
    const char *path = getenv("PAUSECAST_VIC_SOCKET");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (!path || strlen(path) >= sizeof(addr.sun_path))
        return -1;
    strcpy(addr.sun_path, path);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    struct timeval tv = {.tv_sec = 2};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    size_t got = 0;
    int ok = connect(s, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
             write(s, line, strlen(line)) == (ssize_t)strlen(line);
    while (ok && got + 1 < reply_size) {
        ssize_t n = read(s, reply + got, reply_size - 1 - got);
        if (n <= 0) {
            ok = 0;
            break;
        }
        got += (size_t)n;
        if (memchr(reply, '\n', got))
            break;
    }
    close(s);
    reply[got] = 0;
    return ok && strchr(reply, '\n') ? 0 : -1;
}

static void hex(char *out, const unsigned char *in, size_t n) {
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", in[i]);
    if (!n)
        strcpy(out, "-");
}

static int unhex(unsigned char *out, const char *in, size_t n) {
    if (strlen(in) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned int b;
        if (sscanf(in + 2 * i, "%2x", &b) != 1)
            return -1;
        out[i] = (unsigned char)b;
    }
    return 0;
}

static struct nlattr *find_attr(void *start, int len, int type) {
    for (struct nlattr *a = start; len >= (int)sizeof(*a) && a->nla_len >= sizeof(*a) && a->nla_len <= len;
         len -= NLA_ALIGN(a->nla_len), a = (struct nlattr *)((char *)a + NLA_ALIGN(a->nla_len)))
        if ((a->nla_type & NLA_TYPE_MASK) == type)
            return a;
    return NULL;
}

#define ATTR_DATA(a) ((unsigned char *)(a) + NLA_HDRLEN)
#define ATTR_LEN(a) ((int)(a)->nla_len - NLA_HDRLEN)

/* The port request in `nlh` (an RTM_SETLINK for the link with IFLA_PORT_SELF) as the emulator's line:
 * "set <request> <profile> <instance> <host> <mac>", "-" for what is absent. 0 if it is one. */
static int port_request_line(struct nlmsghdr *nlh, char *line, size_t size) {
    struct ifinfomsg *ifi = NLMSG_DATA(nlh);
    int len = (int)nlh->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*ifi));
    void *attrs = (char *)ifi + NLMSG_ALIGN(sizeof(*ifi));
    struct nlattr *self = len > 0 ? find_attr(attrs, len, IFLA_PORT_SELF) : NULL;
    if (!self)
        return -1;
    struct nlattr *req = find_attr(ATTR_DATA(self), ATTR_LEN(self), IFLA_PORT_REQUEST);
    struct nlattr *prof = find_attr(ATTR_DATA(self), ATTR_LEN(self), IFLA_PORT_PROFILE);
    struct nlattr *inst = find_attr(ATTR_DATA(self), ATTR_LEN(self), IFLA_PORT_INSTANCE_UUID);
    struct nlattr *host = find_attr(ATTR_DATA(self), ATTR_LEN(self), IFLA_PORT_HOST_UUID);
    if (!req || ATTR_LEN(req) < 1)
        return -1;
    char profile[PORT_PROFILE_MAX + 1] = "-", inst_hex[2 * UUID_BYTES + 1], host_hex[2 * UUID_BYTES + 1];
    char mac_hex[13] = "-";
    if (prof && ATTR_LEN(prof) > 0) {
        snprintf(profile, sizeof(profile), "%.*s", ATTR_LEN(prof), (char *)ATTR_DATA(prof));
        for (char *p = profile; *p; p++)
            if (*p == ' ' || *p == '\n')
                *p = '_';
    }
    hex(inst_hex, inst ? ATTR_DATA(inst) : NULL, inst && ATTR_LEN(inst) == UUID_BYTES ? UUID_BYTES : 0);
    hex(host_hex, host ? ATTR_DATA(host) : NULL, host && ATTR_LEN(host) == UUID_BYTES ? UUID_BYTES : 0);
    struct nlattr *vfl = find_attr(attrs, len, IFLA_VFINFO_LIST);
    struct nlattr *vfi = vfl ? find_attr(ATTR_DATA(vfl), ATTR_LEN(vfl), IFLA_VF_INFO) : NULL;
    struct nlattr *mac = vfi ? find_attr(ATTR_DATA(vfi), ATTR_LEN(vfi), IFLA_VF_MAC) : NULL;
    if (mac && ATTR_LEN(mac) >= (int)sizeof(struct ifla_vf_mac))
        hex(mac_hex, ((struct ifla_vf_mac *)ATTR_DATA(mac))->mac, 6);
    snprintf(line, size, "set %u %s %s %s %s\n", ATTR_DATA(req)[0], profile, inst_hex, host_hex, mac_hex);
    return 0;
}

static void put_attr(unsigned char **p, int type, const void *data, int len) {
    struct nlattr a = {.nla_len = (unsigned short)(NLA_HDRLEN + len), .nla_type = (unsigned short)type};
    memcpy(*p, &a, sizeof(a));
    memcpy(*p + NLA_HDRLEN, data, (size_t)len);
    memset(*p + NLA_HDRLEN + len, 0, (size_t)(NLA_ALIGN(NLA_HDRLEN + len) - NLA_HDRLEN - len));
    *p += NLA_ALIGN(NLA_HDRLEN + len);
}

/* The IFLA_PORT_SELF nest enic_get_vf_port fills, from the emulator's "port <request> <response>
 * <profile> <instance> <host>" line, into `out`; its length, or 0 (no request applied: no nest). */
static int port_self_nest(unsigned char *out) {
    char reply[512], profile[PORT_PROFILE_MAX + 1], inst_hex[64], host_hex[64];
    unsigned int request, response;
    if (ask("get\n", reply, sizeof(reply)) ||
        sscanf(reply, "port %u %u %40s %63s %63s", &request, &response, profile, inst_hex, host_hex) != 5)
        return 0;
    unsigned char *p = out + NLA_HDRLEN;
    uint16_t request16 = (uint16_t)request, response16 = (uint16_t)response;
    put_attr(&p, IFLA_PORT_REQUEST, &request16, sizeof(request16));
    put_attr(&p, IFLA_PORT_RESPONSE, &response16, sizeof(response16));
    if (strcmp(profile, "-")) {
        char name[PORT_PROFILE_MAX] = {0};
        memcpy(name, profile, strnlen(profile, sizeof(name) - 1));
        put_attr(&p, IFLA_PORT_PROFILE, name, PORT_PROFILE_MAX);
    }
    unsigned char uuid[UUID_BYTES];
    if (!unhex(uuid, inst_hex, UUID_BYTES))
        put_attr(&p, IFLA_PORT_INSTANCE_UUID, uuid, UUID_BYTES);
    if (!unhex(uuid, host_hex, UUID_BYTES))
        put_attr(&p, IFLA_PORT_HOST_UUID, uuid, UUID_BYTES);
    struct nlattr nest = {.nla_len = (unsigned short)(p - out), .nla_type = IFLA_PORT_SELF};
    memcpy(out, &nest, sizeof(nest));
    return (int)(p - out);
}

/* Adds the port's nest to the link's RTM_NEWLINK in the datagram `buf` (`*len` bytes of `cap`); whether
 * the datagram held it (another, such as an earlier request's acknowledgement, leaves the GETLINK pending). */
static int augment(unsigned char *buf, size_t *len, size_t cap, int ifindex) {
    size_t off = 0;
    int found = 0;
    while (off + NLMSG_HDRLEN <= *len) {
        struct nlmsghdr *nlh = (struct nlmsghdr *)(buf + off);
        if (nlh->nlmsg_len < NLMSG_HDRLEN || off + nlh->nlmsg_len > *len)
            return found;
        size_t end = off + NLMSG_ALIGN(nlh->nlmsg_len);
        if (nlh->nlmsg_type == RTM_NEWLINK && nlh->nlmsg_len >= NLMSG_LENGTH(sizeof(struct ifinfomsg)) &&
            ((struct ifinfomsg *)NLMSG_DATA(nlh))->ifi_index == ifindex) {
            found = 1;
            unsigned char nest[512];
            int n = port_self_nest(nest);
            size_t at = off + NLMSG_ALIGN(nlh->nlmsg_len);
            if (n > 0 && *len + (size_t)n <= cap) {
                memmove(buf + at + n, buf + at, *len > at ? *len - at : 0);
                memcpy(buf + at, nest, (size_t)n);
                *len = (at > *len ? at : *len) + (size_t)n;
                nlh->nlmsg_len = (uint32_t)(NLMSG_ALIGN(nlh->nlmsg_len) + (size_t)n);
                end = at + (size_t)n;
            }
        }
        off = end;
    }
    return found;
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
    resolve();
    int ifindex;
    if (!msg || !is_route_netlink(fd) || (ifindex = link_index()) <= 0)
        return real_sendmsg(fd, msg, flags);
    static __thread unsigned char buf[BUF_BYTES];
    size_t total = 0;
    for (size_t i = 0; i < msg->msg_iovlen; i++) {
        if (total + msg->msg_iov[i].iov_len > sizeof(buf))
            return real_sendmsg(fd, msg, flags);
        memcpy(buf + total, msg->msg_iov[i].iov_base, msg->msg_iov[i].iov_len);
        total += msg->msg_iov[i].iov_len;
    }
    struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
    if (total < NLMSG_LENGTH(sizeof(struct ifinfomsg)) || nlh->nlmsg_len > total ||
        nlh->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg)) ||
        ((struct ifinfomsg *)NLMSG_DATA(nlh))->ifi_index != ifindex)
        return real_sendmsg(fd, msg, flags);
    if (nlh->nlmsg_type == RTM_GETLINK && !(nlh->nlmsg_flags & NLM_F_DUMP)) {
        pthread_mutex_lock(&lock);
        getlink_pending[fd] = 1;
        pthread_mutex_unlock(&lock);
        return real_sendmsg(fd, msg, flags);
    }
    char line[256], reply[64];
    if (nlh->nlmsg_type != RTM_SETLINK || port_request_line(nlh, line, sizeof(line)) ||
        ask(line, reply, sizeof(reply)) || strncmp(reply, "ok", 2))
        return real_sendmsg(fd, msg, flags);
    /* the VIC took the request: the kernel acknowledges an empty RTM_SETLINK of the link */
    nlh->nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
    struct iovec iov = {.iov_base = buf, .iov_len = nlh->nlmsg_len};
    struct msghdr stripped = *msg;
    stripped.msg_iov = &iov;
    stripped.msg_iovlen = 1;
    ssize_t sent = real_sendmsg(fd, &stripped, flags);
    return sent < 0 ? sent : (ssize_t)total;
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags) {
    resolve();
    if (fd < 0 || fd >= MAX_FDS || !msg)
        return real_recvmsg(fd, msg, flags);
    pthread_mutex_lock(&lock);
    int mine = getlink_pending[fd] || stash[fd];
    pthread_mutex_unlock(&lock);
    if (!mine)
        return real_recvmsg(fd, msg, flags);
    pthread_mutex_lock(&lock);
    if (!stash[fd]) {
        pthread_mutex_unlock(&lock);
        unsigned char *buf = malloc(BUF_BYTES);
        if (!buf)
            return real_recvmsg(fd, msg, flags);
        struct sockaddr_nl from = {0};
        struct iovec iov = {.iov_base = buf, .iov_len = BUF_BYTES / 2};
        struct msghdr real = {.msg_name = &from, .msg_namelen = sizeof(from), .msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n = real_recvmsg(fd, &real, flags & ~(MSG_PEEK | MSG_TRUNC));
        if (n < 0) {
            free(buf);
            return n;
        }
        size_t len = (size_t)n;
        int answered = augment(buf, &len, BUF_BYTES, link_index());
        pthread_mutex_lock(&lock);
        if (answered)
            getlink_pending[fd] = 0;
        stash[fd] = buf;
        stash_len[fd] = len;
        stash_from[fd] = from;
    }
    size_t copied = 0;
    for (size_t i = 0; i < msg->msg_iovlen && copied < stash_len[fd]; i++) {
        size_t n = msg->msg_iov[i].iov_len < stash_len[fd] - copied ? msg->msg_iov[i].iov_len
                                                                     : stash_len[fd] - copied;
        memcpy(msg->msg_iov[i].iov_base, stash[fd] + copied, n);
        copied += n;
    }
    size_t full = stash_len[fd];
    if (msg->msg_name && msg->msg_namelen >= sizeof(struct sockaddr_nl)) {
        memcpy(msg->msg_name, &stash_from[fd], sizeof(struct sockaddr_nl));
        msg->msg_namelen = sizeof(struct sockaddr_nl);
    }
    msg->msg_controllen = 0;
    msg->msg_flags = copied < full ? MSG_TRUNC : 0;
    if (!(flags & MSG_PEEK)) {
        free(stash[fd]);
        stash[fd] = NULL;
    }
    pthread_mutex_unlock(&lock);
    return (ssize_t)((flags & MSG_TRUNC) ? full : copied);
}
