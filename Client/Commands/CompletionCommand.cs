using System.CommandLine;

namespace TauCluster.Client;

/// <summary>
/// <c>tau completion bash|zsh</c>: a script for the shell to source, whose completions come from tau's own parser
/// through System.CommandLine's <c>[suggest:POSITION]</c> directive, so they cannot differ from what tau accepts.
/// </summary>
internal static class CompletionCommand
{
    private const string Bash = """
        # tau's completions for bash: source <(tau completion bash), e.g. in ~/.bashrc
        _tau_completions()
        {
            local IFS=$'\n'
            COMPREPLY=($(tau "[suggest:${COMP_POINT}]" "${COMP_LINE}" 2>/dev/null))
        }
        complete -o default -F _tau_completions tau

        """;

    private const string Zsh = """
        #compdef tau
        # tau's completions for zsh: source <(tau completion zsh), e.g. in ~/.zshrc after compinit
        _tau()
        {
            local line="${words[1,CURRENT]}"
            local -a suggestions
            suggestions=("${(@f)$(tau "[suggest:${#line}]" "$line" 2>/dev/null)}")
            compadd -a suggestions
        }
        compdef _tau tau

        """;

    public static Command Command()
    {
        var shell = new Argument<string>("SHELL") { Description = "bash or zsh" };
        shell.AcceptOnlyFromAmong("bash", "zsh");
        var command = new Command("completion", "print the shell completion script to source: source <(tau completion bash), or zsh") { shell };
        command.SetAction(r =>
        {
            Console.Write(r.GetValue(shell) == "bash" ? Bash : Zsh);
            return 0;
        });
        return command;
    }
}
