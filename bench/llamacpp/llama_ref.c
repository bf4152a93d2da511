// llama.cpp as a second correctness reference: per-token log-likelihoods and greedy
// continuations for token ids given on the command line, printed as JSON in the same shape as
// bench/reference/ref_llama.py, so the float64 numpy reference, llama.cpp and tenbit's engine
// can be compared on identical ids (no tokeniser in the loop). Built by build.sh against the
// libllama of the pinned llama-cpp-python sdist.
//
//   llama_ref MODEL nll    IDS [THREADS]       IDS = comma-separated token ids
//   llama_ref MODEL greedy IDS N [THREADS]     stops after N tokens or at end-of-generation
//
// Note: ggml's CPU kernels quantise activations to 8 bits for Q4_1/Q8_0 dot products
// (vec_dot_q4_1_q8_1, vec_dot_q8_0_q8_0), so its logits differ from a float reference by more
// than rounding; near-ties can flip.
#include "llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_ids(const char *s, llama_token **out) {
    int cap = 64, n = 0;
    llama_token *v = malloc(sizeof *v * cap);
    const char *p = s;
    while (*p) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p) {
            fprintf(stderr, "bad token list at '%s'\n", p);
            exit(2);
        }
        if (n == cap) v = realloc(v, sizeof *v * (cap *= 2));
        v[n++] = (llama_token)x;
        p = (*end == ',') ? end + 1 : end;
    }
    *out = v;
    return n;
}

// Only errors reach stderr; the JSON on stdout stays the only output.
static void quiet_log(enum ggml_log_level level, const char *text, void *ud) {
    (void)ud;
    if (level >= GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static bool no_progress(float p, void *ud) {
    (void)p;
    (void)ud;
    return true;
}

static int argmax(const float *l, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;  // lowest id wins ties, like numpy argmax
    return b;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL nll|greedy IDS [N] [THREADS]\n", argv[0]);
        return 2;
    }
    const char *mode = argv[2];
    int greedy = strcmp(mode, "greedy") == 0;
    if (!greedy && strcmp(mode, "nll") != 0) {
        fprintf(stderr, "mode must be nll or greedy\n");
        return 2;
    }
    llama_token *ids;
    int n = parse_ids(argv[3], &ids);
    int n_gen = greedy ? (argc > 4 ? atoi(argv[4]) : 32) : 0;
    int targ = greedy ? 5 : 4;
    int threads = argc > targ ? atoi(argv[targ]) : 2;
    if (n < 1 || (!greedy && n < 2)) {
        fprintf(stderr, "need at least %d ids\n", greedy ? 1 : 2);
        return 2;
    }

    llama_log_set(quiet_log, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.progress_callback = no_progress;
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) return 1;
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int nv = llama_vocab_n_tokens(vocab);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= nv) {
            fprintf(stderr, "token id %d out of range\n", ids[i]);
            return 2;
        }

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n + n_gen + 16 > 512 ? n + n_gen + 16 : 512);
    cp.n_batch = cp.n_ubatch = cp.n_ctx;
    cp.n_threads = cp.n_threads_batch = threads;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) return 1;

    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        b.token[i] = ids[i];
        b.pos[i] = i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = greedy ? (i == n - 1) : 1;
    }
    b.n_tokens = n;
    if (llama_decode(ctx, b) != 0) {
        fprintf(stderr, "llama_decode failed\n");
        return 1;
    }

    if (!greedy) {
        double sum = 0;
        printf("{\"nll\": [");
        for (int i = 0; i + 1 < n; i++) {
            const float *l = llama_get_logits_ith(ctx, i);
            double mx = l[0], s = 0;
            for (int j = 1; j < nv; j++) mx = l[j] > mx ? l[j] : mx;
            for (int j = 0; j < nv; j++) s += exp((double)l[j] - mx);
            double v = log(s) + mx - (double)l[ids[i + 1]];
            sum += v;
            printf("%s%.6f", i ? ", " : "", v);
        }
        printf("], \"top1\": [");
        for (int i = 0; i < n; i++) printf("%s%d", i ? ", " : "", argmax(llama_get_logits_ith(ctx, i), nv));
        printf("], \"mean_nll_nats\": %.6f, \"mean_bits_per_token\": %.6f}\n", sum / (n - 1),
               sum / (n - 1) / log(2.0));
    } else {
        printf("{\"prompt_len\": %d, \"ids\": [", n);
        int last = n - 1;
        for (int k = 0; k < n_gen; k++) {
            llama_token t = argmax(llama_get_logits_ith(ctx, last), nv);
            printf("%s%d", k ? ", " : "", t);
            if (llama_vocab_is_eog(vocab, t)) break;
            if (llama_decode(ctx, llama_batch_get_one(&t, 1)) != 0) return 1;
            last = -1;
        }
        printf("]}\n");
    }
    llama_batch_free(b);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    free(ids);
    return 0;
}
