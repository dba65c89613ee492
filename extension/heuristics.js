// Guessing a job's title, company and posting text from a page. Pure functions, no browser APIs:
// popup.js runs pageInfo() inside the tab (chrome.scripting) and guessJob() on what it returns.
"use strict";

(function (root) {
  // Sites whose name is never the hiring company.
  const JOB_BOARDS = ["linkedin", "indeed", "glassdoor", "greenhouse", "lever", "workday", "myworkdayjobs", "monster",
    "ziprecruiter", "stepstone", "welcome to the jungle", "wellfound", "angellist", "smartrecruiters", "ashby",
    "jobvite", "icims", "dice", "seek", "xing", "careerbuilder", "simplyhired", "otta", "hired", "remoteok",
    "we work remotely", "workable", "recruitee", "personio", "bamboohr", "teamtailor"];
  const NOISE = /\b(?:job application for|apply(?: now)?|careers?|jobs?|hiring|now hiring|job details?)\b[:\s-]*/gi;

  function clean(text) {
    return String(text || "").replace(/\s+/g, " ").trim();
  }

  function isBoard(name) {
    const lower = clean(name).toLowerCase();
    return !lower || JOB_BOARDS.some((board) => lower === board || lower.startsWith(board + " ") || lower.includes(board + "."));
  }

  // "Data Analyst at Acme Corp | LinkedIn" → {title: "Data Analyst", company: "Acme Corp"}
  function splitTitle(pageTitle) {
    const parts = clean(pageTitle).split(/\s+[|\u2013\u2014\u00b7\u2022-]\s+/).map(clean).filter(Boolean)
      .filter((part) => !isBoard(part));
    let title = "", company = "";
    for (const part of parts) {
      const at = part.match(/^(?:job application for\s+)?(.+?)\s+(?:at|@)\s+(.+)$/i);
      if (at) return {title: clean(at[1].replace(NOISE, " ")), company: clean(at[2])};
    }
    if (parts.length >= 2) {
      title = parts[0];
      company = parts[1];
    } else if (parts.length === 1) {
      title = parts[0];
    }
    return {title: clean(title.replace(NOISE, " ")), company: clean(company.replace(NOISE, " "))};
  }

  function htmlToText(html) {
    return clean(String(html || "").replace(/<(?:br|\/p|\/li|\/h\d)[^>]*>/gi, "\n").replace(/<[^>]+>/g, " ")
      .replace(/&nbsp;/g, " ").replace(/&amp;/g, "&").replace(/&lt;/g, "<").replace(/&gt;/g, ">")
      .replace(/&quot;/g, '"').replace(/&#39;/g, "'"));
  }

  // info: what pageInfo() returned. Structured data (schema.org JobPosting) wins, then the
  // page's h1 and title, then og:site_name for the company; the selection wins for the posting.
  function guessJob(info, maxPostingChars) {
    info = info || {};
    const posting = info.jobPosting || {};
    const fromTitle = splitTitle(info.ogTitle || info.title);
    const h1 = clean(info.h1);
    let title = clean(posting.title) || (h1 && h1.length <= 120 ? splitTitle(h1).title : "") || fromTitle.title;
    let company = clean(posting.company) || fromTitle.company;
    if (!company && info.siteName && !isBoard(info.siteName)) company = clean(info.siteName);
    if (h1 && fromTitle.company && !posting.title && h1.toLowerCase() === fromTitle.company.toLowerCase()) {
      title = fromTitle.title; // the h1 is the company's name
    }
    let text = clean(info.selection) ? String(info.selection).trim()
      : posting.description ? htmlToText(posting.description) : String(info.text || "").trim();
    text = text.replace(/[ \t]+/g, " ").replace(/\n{3,}/g, "\n\n");
    const limit = maxPostingChars || 12000;
    return {title: title.slice(0, 200), company: company.slice(0, 200), posting: text.slice(0, limit),
            fromSelection: Boolean(clean(info.selection))};
  }

  // Runs inside the job page (chrome.scripting.executeScript): must not use anything outside itself.
  function pageInfo() {
    const meta = (name) => {
      const el = document.querySelector(`meta[property="${name}"], meta[name="${name}"]`);
      return el ? el.getAttribute("content") || "" : "";
    };
    let jobPosting = null;
    const visit = (node) => {
      if (!node || typeof node !== "object" || jobPosting) return;
      if (Array.isArray(node)) return node.forEach(visit);
      const type = [].concat(node["@type"] || []);
      if (type.includes("JobPosting")) {
        const org = node.hiringOrganization;
        jobPosting = {title: node.title || "", company: (org && (org.name || org)) || "",
                      description: String(node.description || "").slice(0, 60000)};
        if (typeof jobPosting.company !== "string") jobPosting.company = "";
        return;
      }
      visit(node["@graph"]);
    };
    for (const script of document.querySelectorAll('script[type="application/ld+json"]')) {
      try { visit(JSON.parse(script.textContent)); } catch (e) { /* not JSON: skip */ }
    }
    const main = document.querySelector("main, [role=main], article, #job-description, .job-description") || document.body;
    const h1 = document.querySelector("h1");
    return {
      selection: String(window.getSelection ? window.getSelection() : "").trim().slice(0, 60000),
      text: (main ? main.innerText : "").slice(0, 60000),
      title: document.title || "", h1: h1 ? h1.innerText : "", ogTitle: meta("og:title"),
      siteName: meta("og:site_name"), jobPosting, url: location.href,
    };
  }

  root.CoverloraHeuristics = {guessJob, splitTitle, pageInfo, isBoard};
})(typeof globalThis !== "undefined" ? globalThis : this);
