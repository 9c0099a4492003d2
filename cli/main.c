/* main.c: the kiln command: global options, then git-style subcommands. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **, const char *);
    const char *help;
} commands[] = {
    {"init", cmd_init, "create (or migrate) the store"},
    {"ingest", cmd_ingest, "read dumps, archives and text files into the corpus"},
    {"stats", cmd_stats, "corpus totals: sources, documents, sentences, bytes"},
    {"sources", cmd_sources, "the ingested files with their status"},
    {"docs", cmd_docs, "documents: kiln docs dump"},
    {"vocab", cmd_vocab, "vocabularies (WordPiece, GPT-2 BPE): import, export, list, use, train"},
    {"tokenize", cmd_tokenize, "the stored documents into token ids"},
    {"sample", cmd_sample, "pretraining samples (masked LM, SOP, NSP, ELECTRA, causal, entities)"},
    {"train", cmd_train, "pretrain ALBERT, BERT, ELECTRA or GPT-2 from a run config (resumable)"},
    {"export", cmd_export, "a checkpoint as a Hugging Face model folder"},
    {"import", cmd_import, "a Hugging Face BERT / ALBERT / ELECTRA / GPT-2 folder as a checkpoint"},
    {"predict", cmd_predict, "fill [MASK] tokens with a checkpoint's model"},
    {"finetune", cmd_finetune, "fine-tune a pretrained model on a labelled dataset"},
    {"eval", cmd_eval, "a classifier on a labelled file; a GPT-2's perplexity or few-shot accuracy"},
    {"generate", cmd_generate, "continue prompts with a GPT-2 checkpoint (sampling, KV cache)"},
    {"classify", cmd_classify, "label texts with a fine-tuned classifier"},
    {"encode", cmd_encode, "text to token ids or pieces, as BERT's or GPT-2's tokenizer"},
    {"decode", cmd_decode, "token ids back to text"},
    {"kg", cmd_kg, "knowledge graphs: import, link, embed, eval, stats, show"},
    {"daemon", cmd_daemon, "the service: a spool folder into corpus, queued jobs, crash recovery"},
    {"run", cmd_run, "the daemon's jobs: submit, list, show, pause, resume, cancel"},
    {"status", cmd_status, "the daemon's state, spool, running job and queue"},
    {"plot", cmd_plot, "a run's curves (or several runs') as SVG, PNG or PDF"},
    {"metrics", cmd_metrics, "every metric of a run as CSV or JSON lines"},
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kiln [--db PATH] [-q|-v] COMMAND [ARGS]\n"
            "\n"
            "kiln turns raw document dumps into a clean corpus and pretrained language models.\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f,
            "\n"
            "options (before or after the command):\n"
            "  --db PATH    the store (default $KILN_DB, else ./kiln.db)\n"
            "  -q, -v       quieter (errors only) / more verbose (debug)\n"
            "  --json       machine-readable output, where a command reports\n"
            "  --version    print the version\n"
            "  -h, --help   help; 'kiln COMMAND --help' for a command\n"
            "\n"
            "exit codes follow sysexits.h: 64 usage, 65 bad data, 66 missing input, 73 cannot\n"
            "create, 74 I/O error, 75 store locked.\n");
}

/* Jansson's allocations: out of memory ends the process as xmalloc does
 * (exit 71), instead of a NULL that every caller would read as "not JSON". */
static void *json_alloc(size_t n) { return xmalloc(n); }

int main(int argc, char **argv)
{
    json_set_alloc_funcs(json_alloc, free);
    const char *db = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--db") && i + 1 < argc) db = argv[++i];
        else if (!strncmp(a, "--db=", 5)) db = a + 5;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) klog_threshold = KLOG_ERROR;
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) klog_threshold = KLOG_DEBUG;
        else if (!strcmp(a, "--version")) { printf("kiln %s\n", KILN_VERSION); return 0; }
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else { kerr("unknown option %s (see kiln --help)", a); return EX_USAGE; }
    }
    if (i >= argc) { usage(stderr); return EX_USAGE; }
    const char *cmd = argv[i];
    if (!strcmp(cmd, "help")) {
        if (i + 1 < argc) {
            char *args[] = {argv[i + 1], "--help", NULL};
            for (size_t k = 0; k < sizeof commands / sizeof *commands; k++)
                if (!strcmp(commands[k].name, argv[i + 1])) return commands[k].fn(2, args, db);
        }
        usage(stdout);
        return 0;
    }
    for (size_t k = 0; k < sizeof commands / sizeof *commands; k++)
        if (!strcmp(commands[k].name, cmd)) return commands[k].fn(argc - i, argv + i, db);
    kerr("unknown command '%s' (see kiln --help)", cmd);
    return EX_USAGE;
}
