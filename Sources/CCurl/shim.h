// libcurl. Its setopt/getinfo functions are variadic, which Swift cannot call:
// one typed inline wrapper per argument kind is all the C we need.
#pragma once
#include <curl/curl.h>

typedef size_t (*CCurl_data_callback)(char *data, size_t size, size_t nmemb, void *userdata);
typedef int (*CCurl_socket_callback)(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp);
typedef int (*CCurl_timer_callback)(CURLM *multi, long timeout_ms, void *userp);

static inline CURLcode CCurl_easy_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode CCurl_easy_setopt_ptr(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode CCurl_easy_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode CCurl_easy_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode CCurl_easy_setopt_data_callback(CURL *h, CURLoption o, CCurl_data_callback v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode CCurl_easy_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode CCurl_easy_getinfo_off(CURL *h, CURLINFO i, curl_off_t *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode CCurl_easy_getinfo_ptr(CURL *h, CURLINFO i, char **v) { return curl_easy_getinfo(h, i, v); }

static inline CURLMcode CCurl_multi_setopt_ptr(CURLM *m, CURLMoption o, void *v) { return curl_multi_setopt(m, o, v); }
static inline CURLMcode CCurl_multi_setopt_long(CURLM *m, CURLMoption o, long v) { return curl_multi_setopt(m, o, v); }
static inline CURLMcode CCurl_multi_setopt_socket_callback(CURLM *m, CCurl_socket_callback v) { return curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, v); }
static inline CURLMcode CCurl_multi_setopt_timer_callback(CURLM *m, CCurl_timer_callback v) { return curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, v); }

// CURLOPT_OPENSOCKETFUNCTION: lets the gateway see (and refuse) each address curl is about to
// connect to, after DNS resolution: web_fetch's SSRF check.
typedef curl_socket_t (*CCurl_opensocket_callback)(void *clientp, curlsocktype purpose, struct curl_sockaddr *address);
static inline CURLcode CCurl_easy_setopt_opensocket(CURL *h, CCurl_opensocket_callback v) { return curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, v); }

// CURLOPT_CLOSESOCKETFUNCTION: curl is closing one of its sockets (after telling the socket
// callback to stop watching it): the client closes its loop watcher first, then the socket.
#include <unistd.h>
typedef int (*CCurl_closesocket_callback)(void *clientp, curl_socket_t item);
static inline CURLcode CCurl_easy_setopt_closesocket(CURL *h, CCurl_closesocket_callback v) { return curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, v); }
static inline int CCurl_close_socket(curl_socket_t s) { return close(s); }

// The IP address (4 or 16 bytes into out) and port of a curl_sockaddr; 0 if not IPv4/IPv6.
// curl allocates the full sockaddr_storage behind `addr`, so reading a sockaddr_in6 is valid.
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
static inline int CCurl_sockaddr_ip(const struct curl_sockaddr *a, unsigned char out[16], int *port) {
    if (a->family == AF_INET && a->addrlen >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->addr;
        memcpy(out, &in->sin_addr, 4);
        *port = ntohs(in->sin_port);
        return 4;
    }
    if (a->family == AF_INET6 && a->addrlen >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->addr;
        memcpy(out, &in6->sin6_addr, 16);
        *port = ntohs(in6->sin6_port);
        return 16;
    }
    return 0;
}
static inline curl_socket_t CCurl_open_socket(const struct curl_sockaddr *a) { return socket(a->family, a->socktype, a->protocol); }
static inline curl_socket_t CCurl_socket_bad(void) { return CURL_SOCKET_BAD; }

// Composite macros Swift does not import.
static inline int CCurl_pause_continue(void) { return CURLPAUSE_CONT; }
static inline size_t CCurl_writefunc_pause(void) { return CURL_WRITEFUNC_PAUSE; }
