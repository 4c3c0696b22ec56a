using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using OpenQA.Selenium.Support.UI;

namespace TauCluster.Http.Tests;

/// <summary>A silo with an API key and the real domain manifold, for the console in a browser.</summary>
public sealed class BrowserServerFixture : IAsyncLifetime
{
    public const string Key = "browser-test-key";
    public SiloServer Server { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var settings = new List<(string, string)> { ("Tau:Http:ApiKeys:0", Key) };
        if (TestPaths.RealManifoldDirectory() is { } real) settings.Add(($"Tau:Manifolds:{TestPaths.RealManifoldName}", real));
        Server = await SiloServer.Start([.. settings]);
    }

    public async Task DisposeAsync() => await Server.DisposeAsync();
}

/// <summary>
/// The web console in headless Chromium (Debian's chromium and chromium-driver) against a real silo: the key, a chat
/// whose reply streams in, the session in the cluster view with its cache bytes, the domains view, and a deleted session
/// leaving the view. Screenshots go to TAU_SCREENSHOTS when set (docs/ keeps those of the README).
/// </summary>
public sealed class BrowserConsoleTests(BrowserServerFixture fixture) : IClassFixture<BrowserServerFixture>
{
    private const string Chromium = "/usr/bin/chromium";
    private const string ChromeDriver = "/usr/bin/chromedriver";
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(1);

    private SiloServer Server => fixture.Server;

    private static ChromeDriver StartBrowser(string profile)
    {
        TestPaths.Require(File.Exists(Chromium) && File.Exists(ChromeDriver), "chromium and chromium-driver (apt-get install chromium chromium-driver)");
        var service = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(ChromeDriver)!, Path.GetFileName(ChromeDriver));
        service.SuppressInitialDiagnosticInformation = true;
        service.HideCommandPromptWindow = true;
        var options = new ChromeOptions { BinaryLocation = Chromium };
        // Root in a container: no sandbox; /dev/shm may be small there; no GPU; a window big enough for the screenshots;
        // nothing that calls out (the machines here have no internet); a profile of the test's own.
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,900",
            "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
            $"--user-data-dir={profile}");
        return new ChromeDriver(service, options, Patience);
    }

    private static IWebElement WaitFor(IWebDriver browser, By by, Func<IWebElement, bool>? until = null) =>
        new WebDriverWait(browser, Patience).Until(b => b.FindElements(by).FirstOrDefault(e => e.Displayed && (until?.Invoke(e) ?? true)));

    private static void Screenshot(IWebDriver browser, string name)
    {
        var directory = Environment.GetEnvironmentVariable("TAU_SCREENSHOTS") ?? Path.Combine(AppContext.BaseDirectory, "screenshots");
        Directory.CreateDirectory(directory);
        ((ITakesScreenshot)browser).GetScreenshot().SaveAsFile(Path.Combine(directory, name));
    }

    [SkippableFact]
    public async Task A_newcomer_signs_in_chats_with_the_default_model_watches_the_session_in_the_cluster_view_and_deletes_it()
    {
        var profile = Directory.CreateTempSubdirectory("tau-console-chromium-").FullName;
        using var browser = StartBrowser(profile);
        browser.Navigate().GoToUrl(new Uri(Server.Address, "/"));

        // The page asks for the key before anything else: the API refuses the page's first calls without one.
        WaitFor(browser, By.Id("api-key")).SendKeys(BrowserServerFixture.Key);
        Assert.False(browser.FindElement(By.Id("views")).Displayed);
        browser.FindElement(By.Id("login-submit")).Click();
        WaitFor(browser, By.CssSelector("#model option[value='default']"));
        Assert.False(browser.FindElement(By.Id("login")).Displayed);
        new SelectElement(browser.FindElement(By.Id("model"))).SelectByValue("default");
        var temperature = browser.FindElement(By.Id("temperature"));
        temperature.Clear();
        temperature.SendKeys("0.7");
        var maxTokens = browser.FindElement(By.Id("max_tokens"));
        maxTokens.Clear();
        maxTokens.SendKeys("120");
        string session = browser.FindElement(By.Id("session-id")).GetDomProperty("value")!;

        browser.FindElement(By.Id("chat-input")).SendKeys("And it came to pass");
        browser.FindElement(By.Id("send")).Click();
        var reply = WaitFor(browser, By.CssSelector(".turn.assistant"), e => e.FindElements(By.ClassName("figures")).Count > 0);
        Assert.Equal("", browser.FindElement(By.Id("chat-error")).Text);
        Assert.NotEmpty(reply.FindElement(By.ClassName("text")).Text.Trim());
        Assert.True(int.Parse(reply.GetDomAttribute("data-chunks")!) > 1, "the reply arrived in pieces, as the server streamed it");
        Assert.Contains($"session {session}", reply.FindElement(By.ClassName("figures")).Text);
        Screenshot(browser, "console-chat.png");

        using var http = Server.Http(BrowserServerFixture.Key);
        var info = (await http.GetFromJsonAsync<JsonObject>($"/v1/sessions/{session}"))!;
        browser.FindElement(By.CssSelector(".tab[data-view='cluster']")).Click();
        Assert.False(browser.FindElement(By.Id("view-chat")).Displayed);   // one view at a time
        var row = WaitFor(browser, By.CssSelector($"#cluster-sessions tr[data-session='{session}']"));
        Assert.Equal(info["cache_bytes"]!.GetValue<long>().ToString(), row.FindElement(By.ClassName("cache-bytes")).GetDomAttribute("data-bytes"));
        Assert.Equal(info["baseline_cache_bytes"]!.GetValue<long>().ToString(), row.FindElement(By.ClassName("baseline-bytes")).GetDomAttribute("data-bytes"));
        Assert.Contains(info["silo"]!.GetValue<string>(), row.Text);
        Screenshot(browser, "console-cluster.png");

        browser.FindElement(By.CssSelector(".tab[data-view='domains']")).Click();
        if (TestPaths.RealManifoldDirectory() is not null)
            Assert.Contains("384", WaitFor(browser, By.CssSelector($"#domains tr[data-domain='{TestPaths.RealManifoldName}']")).Text);
        Screenshot(browser, "console-domains.png");

        browser.FindElement(By.CssSelector(".tab[data-view='chat']")).Click();
        WaitFor(browser, By.Id("delete-session")).Click();
        WaitFor(browser, By.Id("session-id"), e => e.GetDomProperty("value") != session);
        Assert.Empty(browser.FindElements(By.CssSelector("#transcript .turn")));
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync($"/v1/sessions/{session}")).StatusCode);
        browser.FindElement(By.CssSelector(".tab[data-view='cluster']")).Click();
        WaitFor(browser, By.Id("cluster-totals"), e => e.Text.Contains("live sessions"));
        new WebDriverWait(browser, Patience).Until(b => b.FindElements(By.CssSelector($"#cluster-sessions tr[data-session='{session}']")).Count == 0);
        browser.Quit();
        try { Directory.Delete(profile, recursive: true); } catch (IOException) { }
    }
}
