/* Subcommands of the optvq CLI. Each returns the process exit status:
 * 0 success, 1 runtime failure (bad input file, ...), 2 usage error. */
#ifndef OPTVQ_CLI_COMMANDS_H
#define OPTVQ_CLI_COMMANDS_H

int cmd_quantize(int argc, char **argv);
int cmd_toy(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_encode(int argc, char **argv);
int cmd_decode(int argc, char **argv);
int cmd_reconstruct(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_metrics(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
