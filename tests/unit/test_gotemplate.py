"""clients.gotemplate: Go's text/template as docker's --format uses it.

Expected outputs are what `docker network inspect -f` / Go's text/template
print for the same data (Go's fmt for maps, slices and structs)."""

from __future__ import annotations

import pytest

from clients.gotemplate import TemplateError, render

NET = {
    "Name": "web",
    "Id": "f" * 64,
    "Driver": "bridge",
    "EnableIPv6": False,
    "IPAM": {
        "Driver": "default",
        "Options": {},
        "Config": [
            {
                "Subnet": "10.1.0.0/24",
                "IPRange": "",
                "Gateway": "10.1.0.1",
                "AuxiliaryAddresses": {},
            }
        ],
    },
    "Containers": {
        "bb": {"Name": "c2", "IPv4Address": "10.1.0.3/24"},
        "aa": {"Name": "c1", "IPv4Address": "10.1.0.2/24"},
    },
    "Options": {"com.docker.network.bridge.name": "br0", "a": "1"},
    "Labels": {"team": "a", "Env": "prod"},
    "Count": 3,
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param("{{.Name}}", "web", id="field"),
        pytest.param("{{.IPAM.Driver}}", "default", id="nested-field"),
        pytest.param("{{.IPAM.Config}}", "[{10.1.0.0/24  10.1.0.1 map[]}]", id="slice-of-struct"),
        pytest.param(
            "{{range .Containers}}{{.IPv4Address}} {{end}}",
            "10.1.0.2/24 10.1.0.3/24 ",
            id="range-map-in-key-order",
        ),
        pytest.param(
            "{{range $id, $c := .Containers}}{{$id}}={{$c.Name}};{{end}}",
            "aa=c1;bb=c2;",
            id="range-key-value",
        ),
        pytest.param('{{index .Labels "team"}}', "a", id="index-map"),
        pytest.param('{{index .Labels "nope"}}', "<no value>", id="index-missing"),
        pytest.param("{{.Labels.team}}", "a", id="map-key-as-field"),
        pytest.param("{{.Labels}}", "map[Env:prod team:a]", id="map-printed-sorted"),
        pytest.param(
            "{{json .Options}}",
            '{"a":"1","com.docker.network.bridge.name":"br0"}',
            id="json-map-sorted",
        ),
        pytest.param('{{json .IPAM.Config}}', '[{"Subnet":"10.1.0.0/24","IPRange":"",'
                     '"Gateway":"10.1.0.1","AuxiliaryAddresses":{}}]', id="json-structs"),
        pytest.param("{{.EnableIPv6}}", "false", id="bool"),
        pytest.param("{{if .EnableIPv6}}v6{{else}}v4{{end}}", "v4", id="if-else"),
        pytest.param(
            '{{if eq .Driver "host"}}h{{else if eq .Driver "bridge"}}b{{else}}o{{end}}',
            "b",
            id="else-if",
        ),
        pytest.param("{{with .IPAM}}{{.Driver}}{{end}}", "default", id="with"),
        pytest.param("{{range .IPAM.Options}}x{{else}}none{{end}}", "none", id="range-else"),
        pytest.param("{{.Name | upper}}", "WEB", id="pipe"),
        pytest.param('{{printf "%s/%d" .Name .Count}}', "web/3", id="printf"),
        pytest.param('{{printf "%-5s|" .Name}}', "web  |", id="printf-width"),
        pytest.param("{{len .Containers}}", "2", id="len"),
        pytest.param('{{join (split "a,b" ",") "+"}}', "a+b", id="split-join"),
        pytest.param("{{(index .IPAM.Config 0).Gateway}}", "10.1.0.1", id="paren-chain"),
        pytest.param("{{$n := .Name}}{{$n}}-{{$n}}", "web-web", id="variable"),
        pytest.param("{{range .IPAM.Config}}{{$.Name}}:{{.Subnet}}{{end}}", "web:10.1.0.0/24",
                     id="dollar-root"),
        pytest.param("a  {{- .Name -}}  b", "awebb", id="trim-markers"),
        pytest.param("{{/* a comment */}}x", "x", id="comment"),
        pytest.param('{{truncate .Id 12}}', "f" * 12, id="truncate"),
        pytest.param("{{and .Name .Driver}} {{or .EnableIPv6 0}} {{not .Name}}", "bridge 0 false",
                     id="and-or-not"),
        pytest.param("{{json .}}", None, id="json-dot"),
        pytest.param("{{`raw`}}", "raw", id="raw-string"),
    ],
)  # fmt: skip
def test_templates_print_as_go(template, expected):
    out = render(template, NET)
    if expected is None:
        assert out.startswith('{"Name":"web"') and '"Labels":{"Env":"prod","team":"a"}' in out
    else:
        assert out == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        pytest.param("{{.Nope}}", "can't evaluate field Nope", id="missing-struct-field"),
        pytest.param("{{if .Name}}x", "without {{end}}", id="unclosed-if"),
        pytest.param("{{end}}", "unexpected {{end}}", id="stray-end"),
        pytest.param("{{nofunc .Name}}", 'function "nofunc" not defined', id="unknown-function"),
        pytest.param("{{.Name", "unclosed action", id="unclosed-action"),
        pytest.param("{{template \"x\"}}", "not supported", id="template-unsupported"),
        pytest.param("{{$x}}", "undefined variable", id="undefined-variable"),
        pytest.param("{{index .IPAM.Config 5}}", "out of range", id="index-out-of-range"),
        pytest.param("{{(.Name}}", "unclosed left paren", id="unclosed-paren"),
    ],
)  # fmt: skip
def test_bad_templates_raise_template_error(template, message):
    with pytest.raises(TemplateError, match=message):
        render(template, NET)


def test_table_template_has_docker_headers_and_aligned_columns():
    from clients import output

    rows = [{"ID": "abc", "Name": "web", "CreatedAt": "x"}, {"ID": "d", "Name": "a-long-name"}]
    text = output.render("table {{.ID}}\\t{{.Name}}", rows, {"ID": "NETWORK ID"})
    assert text.splitlines() == [
        "NETWORK ID   NAME",
        "abc          web",
        "d            a-long-name",
    ]
    text = output.render("table {{.Name}}\\t{{.CreatedAt}}", rows[:1])
    assert text.splitlines() == ["NAME      CREATED AT", "web       x"]
    assert output.render("{{.Name}}", rows) == "web\na-long-name\n"
    with pytest.raises(TemplateError):
        output.check("table {{.Name")
